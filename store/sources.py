"""Input listing: URIs, globs, folders and URI lists → sorted work units with fingerprints and safe ids.

Runs in the driver before Ray starts: listing is cheap (file metadata only), and doing it here gives sorted,
deterministic units, per-input content fingerprints for resume, and ``video_id``s that are safe to use in output
paths. A unit is what the pipeline publishes atomically:

* one **video file** (mp4, mov, mkv, avi, webm) → one unit, frames in presentation order;
* the **image files of one folder** (jpg, jpeg, png, bmp, webp) → one unit, frames in natural name order
  (``2.jpg`` before ``10.jpg``), so image sequences (PoseTrack, Bonn) track like videos.

Accepted inputs: local paths, ``s3://`` (and any fsspec) URIs, glob patterns, folders (recursive), and ``.txt`` /
``.csv`` files listing one URI per line (CSV: a ``uri`` column, or the first column); a relative entry in a list file
is relative to the list file's folder, and an entry that cannot be listed is reported with the list file and line.
``video_id`` is the sanitised file or folder name plus 8 hex digits of the URI's hash: readable, collision-free, and
never a path traversal.

A file named on its own must be media; inside folders and globs, other files are skipped, and
:func:`scan_inputs` reports them (hidden files, ``.name``, are skipped silently).

Every URI is normalised before ids and fingerprints are made (:func:`normalize_uri`), so one file named under two
spellings (``file:///x/a.mp4``, ``/x//a.mp4``, ``../x/./a.mp4``) is one unit with one ``video_id``, and resume
recognises it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import fsspec

__all__ = [
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "InputError",
    "InputListing",
    "WorkUnit",
    "list_inputs",
    "scan_inputs",
    "sanitize_id",
    "natural_key",
    "normalize_uri",
]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LIST_EXTENSIONS = (".txt", ".csv")


class InputError(ValueError):
    """An input URI that cannot be listed (missing, unsupported type); raised before any work starts."""


@dataclass(frozen=True)
class WorkUnit:
    """One video, or one folder of images, as published by the pipeline.

    Attributes:
        video_id: safe, unique id (``[A-Za-z0-9._-]``, ≤ 73 chars); the output partition key.
        source_uri: the video file's URI, or the image folder's URI.
        kind: ``"video"`` or ``"images"``.
        fingerprint: sha256 over sizes and modification stamps (ETag on S3) of the unit's files.
        frames: for ``"images"``, the image URIs in frame order; empty for videos.
    """

    video_id: str
    source_uri: str
    kind: str
    fingerprint: str
    frames: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class InputListing:
    """What :func:`scan_inputs` found.

    Attributes:
        units: the work units, as :func:`list_inputs` returns them.
        skipped: normalised URIs of the files inside listed folders or glob matches that are neither videos nor
            images (``notes.md``, ``a.gif``), sorted; hidden files are not counted.
    """

    units: list[WorkUnit]
    skipped: list[str]


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_id(name: str, uri: str, max_len: int = 64) -> str:
    """``name`` reduced to ``[A-Za-z0-9._-]`` (no leading dots), plus ``-`` and 8 hex digits of sha1(uri)."""
    base = _SAFE.sub("_", name).strip("._-")[:max_len] or "input"
    return f"{base}-{hashlib.sha1(uri.encode()).hexdigest()[:8]}"


def natural_key(s: str) -> tuple:
    """Sort key that orders embedded numbers numerically (``frame2`` < ``frame10``), then by the raw string."""
    parts = re.split(r"(\d+)", s)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts) + ((2, 0, s),)


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)
_LOCAL_SCHEMES = ("file", "local")


def _local(path: str) -> str:
    # POSIX keeps a leading "//" through normpath (implementation-defined root); Linux treats it as "/".
    out = os.path.abspath(os.path.normpath(path))
    return "/" + out.lstrip("/") if out.startswith("//") else out


def normalize_uri(uri: str) -> str:
    """The one spelling of ``uri`` that ids and fingerprints are made from.

    * ``file://`` (and fsspec's ``local://``) URIs become absolute local paths (``file://localhost/x`` too);
    * local paths become ``os.path.abspath(os.path.normpath(path))``: ``//``, ``./`` and ``..`` segments are
      collapsed lexically, relative paths are made absolute against the working directory. Symlinks are *not*
      resolved: a symlinked folder is a name the user chose (and ``..`` after a symlink is then taken lexically,
      as the shell does), and resolving would make ids depend on the storage layout behind the link;
    * other URIs (``s3://bucket/key``...) keep scheme and bucket, with runs of ``/`` in the key collapsed
      (a trailing ``/`` is dropped). Object stores treat ``a//b`` and ``a/b`` as different keys, but the
      listing then reads what it names, so a key really spelled with ``//`` is reported as not found
      rather than silently labelled twice.

    Glob characters pass through unchanged. Idempotent: ``normalize_uri(normalize_uri(u)) == normalize_uri(u)``.
    """
    m = _SCHEME.match(uri)
    if m is None:
        return _local(uri) if uri else uri
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme in _LOCAL_SCHEMES:
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        return _local(rest or "/")
    bucket, _, key = rest.partition("/")
    key = re.sub(r"/{2,}", "/", key).strip("/")
    return f"{scheme}://{bucket}/{key}" if key else f"{scheme}://{bucket}"


def _ext(path: str) -> str:
    dot = path.rfind(".")
    return path[dot:].lower() if dot > path.rfind("/") else ""


def _stamp(info: dict) -> str:
    """What identifies a file's content cheaply: size plus ETag (object stores) or mtime (file systems)."""
    etag = info.get("ETag") or info.get("etag")
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    return f"{info.get('size')}:{etag if etag else mtime}"


def _read_list(fs: fsspec.AbstractFileSystem, path: str) -> list[tuple[int, str]]:
    """The entries of a list file as ``(line number, entry)``: ``.txt`` one per line (blank lines and ``#``
    comments skipped), ``.csv`` the ``uri`` column or the first."""
    with fs.open(path, "rt") as f:
        text = f.read()
    if _ext(path) == ".txt":
        lines = enumerate(text.splitlines(), start=1)
        return [(n, ln.strip()) for n, ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.reader(io.StringIO(text))
    rows, last = [], 0
    for r in reader:  # a row's first line (a quoted field may span several)
        rows.append((last + 1, r))
        last = reader.line_num
    if not rows:
        return []
    header = rows[0][1]
    col = header.index("uri") if "uri" in header else 0
    body = rows[1:] if "uri" in header else rows
    return [(n, r[col].strip()) for n, r in body if len(r) > col and r[col].strip()]


def _resolve_entry(entry: str, list_uri: str) -> str:
    """A list file's entry as a URI: URIs and absolute paths as written, relative paths against the list file's
    folder (never the working directory, which the job's caller does not control)."""
    if _SCHEME.match(entry) or entry.startswith("/"):
        return entry
    folder = list_uri.rsplit("/", 1)[0] if "/" in list_uri else "."
    return f"{folder}/{entry}"


def _expand(uri: str, storage_options: dict, where: str = "") -> Iterable[tuple[fsspec.AbstractFileSystem, str, dict]]:
    """Yield (filesystem, path, info) for every file ``uri`` names (a folder's recursively, a glob's matches).
    ``where`` (``"<list file> line <n>"``) prefixes the error of an entry of a list file."""
    fs, path = fsspec.core.url_to_fs(uri, **storage_options)
    if any(ch in path for ch in "*?["):
        matches = fs.glob(path, detail=True)
        if not matches:
            raise InputError(
                f"{where}: pattern {uri} matched nothing" if where else f"input pattern matched nothing: {uri}"
            )
        items = sorted(matches.items())
    elif fs.isdir(path):
        items = sorted(fs.find(path, detail=True).items())
    elif fs.isfile(path):
        items = [(path, fs.info(path))]
    else:
        raise InputError(f"{where}: {uri} does not exist" if where else f"input not found: {uri}")
    for p, info in items:
        if info.get("type") == "directory":
            continue
        yield fs, p, info


def _unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    full = fs.unstrip_protocol(path) if not isinstance(fs, fsspec.implementations.local.LocalFileSystem) else path
    return normalize_uri(full)


def _normalize_input(uri: str) -> str:
    """:func:`normalize_uri` for an input as given; a glob is left alone (``*/..`` is not ``.``), its matches are
    normalised as they are listed."""
    return uri if any(ch in uri for ch in "*?[") else normalize_uri(uri)


def list_inputs(uris: Sequence[str], storage_options: dict | None = None) -> list[WorkUnit]:
    """List media under ``uris`` into sorted work units: :func:`scan_inputs`'s ``units``.

    Args:
        uris: paths, URIs, globs, folders, or ``.txt``/``.csv`` files of URIs.
        storage_options: fsspec options (e.g. ``{"client_kwargs": {"endpoint_url": ...}}`` for S3); credentials
            come from the environment, never from here.
    Returns:
        Units sorted by ``source_uri``; each media file appears once even if named twice, under one spelling
        or several (URIs are normalised before ids and fingerprints are made, see :func:`normalize_uri`; the
        ``source_uri`` and ``frames`` are the normalised spellings).
    Raises:
        InputError: an input that does not exist, matches nothing, or names a file of an unsupported type (an
            entry of a list file: naming the list file and line), and ``video_id`` collisions (impossible short
            of a hash collision, but checked).
    """
    return scan_inputs(uris, storage_options).units


def scan_inputs(uris: Sequence[str], storage_options: dict | None = None) -> InputListing:
    """:func:`list_inputs`, plus the files it skipped: non-media files inside listed folders and glob matches
    (hidden files excepted), so a caller can say that ``frame_0001.tif`` was not labelled instead of dropping it
    silently. Arguments, ordering and errors as :func:`list_inputs`."""
    storage_options = storage_options or {}
    videos: dict[str, str] = {}
    images: dict[str, dict[str, str]] = {}
    skipped: set[str] = set()

    def add(fs, path: str, info: dict, explicit: bool, where: str, hidden: bool) -> None:
        ext = _ext(path)
        full = _unstrip(fs, path)
        if ext in VIDEO_EXTENSIONS:
            videos[full] = _stamp(info)
        elif ext in IMAGE_EXTENSIONS:
            folder = full.rsplit("/", 1)[0] if "/" in full else "."
            images.setdefault(folder, {})[full] = _stamp(info)
        elif explicit:
            raise InputError(
                f"{where + ': ' if where else ''}unsupported input type {ext or '(no extension)'!r}: {full}; "
                f"expected a video ({', '.join(VIDEO_EXTENSIONS)}), an image ({', '.join(IMAGE_EXTENSIONS)}), "
                f"a folder, a glob, or a list file ({', '.join(LIST_EXTENSIONS)})"
            )
        elif not hidden:
            skipped.add(full)

    def add_uri(uri: str, where: str = "") -> None:
        uri = _normalize_input(uri)
        fs, path = fsspec.core.url_to_fs(uri, **storage_options)
        # A file named on its own must be media; inside folders and globs, other files are skipped (and reported).
        explicit = not any(ch in path for ch in "*?[") and not fs.isdir(path)
        root = path.rstrip("/") + "/"
        for efs, p, info in _expand(uri, storage_options, where):
            # hidden: a dot file, or a file inside a dot folder of a listed folder (.git/, .ipynb_checkpoints/)
            rel = p[len(root) :] if p.startswith(root) else p.rsplit("/", 1)[-1]
            hidden = any(part.startswith(".") for part in rel.split("/"))
            add(efs, p, info, explicit=explicit, where=where, hidden=hidden)

    for uri in dict.fromkeys(_normalize_input(u) for u in uris):  # one spelling per input, first-seen order
        fs, path = fsspec.core.url_to_fs(uri, **storage_options)
        if _ext(path) in LIST_EXTENSIONS and fs.isfile(path):
            list_uri = _unstrip(fs, path)
            for line, entry in _read_list(fs, path):
                add_uri(_resolve_entry(entry, list_uri), where=f"{list_uri} line {line}")
        else:
            add_uri(uri)

    units = [
        WorkUnit(
            video_id=sanitize_id(uri.rsplit("/", 1)[-1], uri),
            source_uri=uri,
            kind="video",
            fingerprint=hashlib.sha256(stamp.encode()).hexdigest(),
        )
        for uri, stamp in videos.items()
    ]
    for folder, files in images.items():
        order = sorted(files, key=natural_key)
        digest = hashlib.sha256("\n".join(f"{f}|{files[f]}" for f in order).encode()).hexdigest()
        units.append(
            WorkUnit(
                video_id=sanitize_id(folder.rsplit("/", 1)[-1], folder),
                source_uri=folder,
                kind="images",
                fingerprint=digest,
                frames=tuple(order),
            )
        )
    units.sort(key=lambda u: u.source_uri)
    seen: dict[str, str] = {}
    for u in units:
        if u.video_id in seen:
            raise InputError(f"video_id collision: {seen[u.video_id]} and {u.source_uri} both map to {u.video_id}")
        seen[u.video_id] = u.source_uri
    return InputListing(units=units, skipped=sorted(skipped))
