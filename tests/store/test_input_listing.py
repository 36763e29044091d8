"""Input listing: skipped non-media files are reported; list files name their line and resolve relative entries."""

from __future__ import annotations

import pytest

from store.sources import InputError, list_inputs, scan_inputs


def _media(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"listing reads metadata only")


def test_non_media_files_in_folders_and_globs_are_reported(tmp_path):
    seq = tmp_path / "seq"
    _media(seq, "1.jpg", "2.jpg", "3.tif", "notes.md", ".DS_Store")
    _media(seq / ".ipynb_checkpoints", "x.txt")  # inside a hidden folder: silent too
    _media(tmp_path / "clips", "a.mp4", "b.gif")
    listing = scan_inputs([str(seq), str(tmp_path / "clips" / "*")])
    assert [u.kind for u in listing.units] == ["video", "images"]
    assert listing.skipped == [str(tmp_path / "clips" / "b.gif"), str(seq / "3.tif"), str(seq / "notes.md")]
    assert list_inputs([str(seq), str(tmp_path / "clips" / "*")]) == listing.units  # same units, same type
    assert scan_inputs([str(seq / "1.jpg"), str(tmp_path / "clips" / "*.mp4")]).skipped == []


def test_list_file_entries_are_relative_to_the_list_file(tmp_path, monkeypatch):
    data = tmp_path / "data"
    _media(data / "clips", "a.mp4")
    _media(data / "seq", "1.jpg")
    (data / "inputs.txt").write_text("# relative to this file's folder\nclips/a.mp4\n./seq\n")
    (data / "inputs.csv").write_text("uri,note\nclips/a.mp4,x\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory plays no part
    units = list_inputs([str(data / "inputs.txt")])
    assert [u.source_uri for u in units] == [str(data / "clips" / "a.mp4"), str(data / "seq")]
    assert [u.source_uri for u in list_inputs(["../data/inputs.csv"])] == [str(data / "clips" / "a.mp4")]
    # absolute entries and URIs are taken as written
    (tmp_path / "abs.txt").write_text(f"{data / 'clips' / 'a.mp4'}\nfile://{data / 'seq'}\n")
    assert list_inputs([str(tmp_path / "abs.txt")]) == units


def test_list_file_errors_name_the_file_and_line(tmp_path):
    _media(tmp_path, "a.mp4", "b.gif")
    lst = tmp_path / "inputs.txt"
    lst.write_text("a.mp4\n\n# comment\n/x/y.mp4\n")
    with pytest.raises(InputError) as e:
        list_inputs([str(lst)])
    assert str(e.value) == f"{lst} line 4: /x/y.mp4 does not exist"
    lst.write_text("a.mp4\nmissing/*.mp4\n")
    with pytest.raises(InputError, match=rf"^{lst} line 2: pattern {tmp_path}/missing/\*\.mp4 matched nothing$"):
        list_inputs([str(lst)])
    lst.write_text("a.mp4\nb.gif\n")
    with pytest.raises(InputError, match=rf"^{lst} line 2: unsupported input type '\.gif': {tmp_path}/b\.gif;"):
        list_inputs([str(lst)])
    csv = tmp_path / "inputs.csv"
    csv.write_text('uri,note\na.mp4,"two\nlines"\nnope.mp4,x\n')  # a quoted field spans lines 2-3
    with pytest.raises(InputError, match=rf"^{csv} line 4: {tmp_path}/nope\.mp4 does not exist$"):
        list_inputs([str(csv)])
    csv.write_text('uri,note\na.mp4,"two\nlines"\nb.gif,"also\ntwo"\n')
    with pytest.raises(InputError, match=rf"^{csv} line 4: unsupported input type '\.gif'"):  # a row's first line
        list_inputs([str(csv)])
