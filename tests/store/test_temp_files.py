"""Temp files of killed writers: never inside a table folder, so table readers never meet them; swept by age."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from store.writers import TMP_DIR, AtomicParquetWriter, put_atomic, sweep_stale_temps, write_table_atomic

REPO = Path(__file__).resolve().parents[2]


def _killed_mid_publish(out: Path, video_id: str) -> None:
    """A child process that dies by SIGKILL where a crash hurts most: the table part fully written to its temp file,
    the rename not done (an ``AtomicParquetWriter`` for ``poses``, a ``write_table_atomic`` for ``frames``)."""
    code = textwrap.dedent(
        f"""
        import os, signal
        import pyarrow as pa
        from store.writers import AtomicParquetWriter, write_table_atomic
        t = pa.table({{"frame_index": pa.array([0, 1, 2], pa.int64())}})
        w = AtomicParquetWriter({str(out / "poses" / f"video_id={video_id}" / "part-0.parquet")!r}, t.schema)
        w.write(t)
        w._writer.close()  # flushed to the temp file, as just before commit's rename
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # ... and killed there
        write_table_atomic(t, {str(out / "frames" / f"video_id={video_id}" / "part-0.parquet")!r})
        """
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == -9, res.stderr


def _temps(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file() and "tmp" in p.name)


def test_killed_publish_leaves_no_file_that_breaks_table_readers(tmp_path):
    out = tmp_path / "out"
    table = pa.table({"frame_index": pa.array([0, 1], pa.int64())})
    for name in ("poses", "frames"):
        write_table_atomic(table, str(out / name / "video_id=a" / "part-0.parquet"))
    _killed_mid_publish(out, "b")

    temps = _temps(out)
    assert len(temps) == 2  # the crash left its temp files, as a real one does ...
    assert all(p.parent == out / TMP_DIR for p in temps)  # ... but outside every table folder
    for name in ("poses", "frames"):
        assert sorted(p.name for p in (out / name).rglob("*") if p.is_file()) == ["part-0.parquet"]
        # pyarrow's dataset discovery, and a dataset over a plain recursive listing (what a glob gives)
        assert ds.dataset(out / name, format="parquet", partitioning="hive").count_rows() == 2
        files = [str(p) for p in (out / name).rglob("*") if p.is_file()]
        assert ds.dataset(files, format="parquet").count_rows() == 2
    duckdb = pytest.importorskip("duckdb")
    for pattern in ("poses/**", "poses/**/*.parquet", "frames/**"):
        q = f"select count(*), count(distinct video_id) from read_parquet('{out}/{pattern}', hive_partitioning=1)"
        assert duckdb.sql(q).fetchall() == [(2, 1)], pattern
    from store.tables import read_poses

    assert read_poses(str(out)).num_rows == 2


def test_sweep_removes_only_stale_temps(tmp_path):
    out = tmp_path / "out"
    _killed_mid_publish(out, "b")
    dead = _temps(out)
    legacy = out / "poses" / "video_id=a" / ".part-0.parquet.tmp-0123abcd"  # where earlier versions put them
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"PAR1 cut short")
    old = time.time() - 2 * 24 * 3600
    for p in [*dead, legacy]:
        os.utime(p, (old, old))
    # a concurrent run's writer, mid-write: its temp file is fresh and must survive the sweep
    live = AtomicParquetWriter(str(out / "poses" / "video_id=c" / "part-0.parquet"), pa.schema([("x", pa.int64())]))
    live.write(pa.table({"x": [1]}))
    assert sweep_stale_temps(str(out)) == 3
    assert _temps(out) == [Path(live._tmp)]
    assert live.commit() > 0 and (out / "poses" / "video_id=c" / "part-0.parquet").is_file()
    assert sweep_stale_temps(str(out)) == 0 and sweep_stale_temps(str(tmp_path / "missing")) == 0
    assert sweep_stale_temps("s3://bucket/out") == 0  # object stores publish in one request: nothing to sweep


def test_non_table_files_keep_a_hidden_temp_beside_them(tmp_path, monkeypatch):
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(a), real(a, b)))
    put_atomic(b"{}", str(tmp_path / "out" / "_manifest" / "v.json"))
    write_table_atomic(pa.table({"x": [1]}), str(tmp_path / "out" / "poses" / "video_id=v" / "part-0.parquet"))
    assert Path(seen[0]).parent == tmp_path / "out" / "_manifest" and Path(seen[0]).name.startswith(".v.json.tmp-")
    assert Path(seen[1]).parent == tmp_path / "out" / TMP_DIR and not Path(seen[1]).name.endswith(".parquet")
    assert not _temps(tmp_path / "out")
