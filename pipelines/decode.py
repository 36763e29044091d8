"""Probe, shard and decode: work units → frame-exact shards → uint8 RGB frame chunks (PyAV, fsspec).

A **probe** demuxes a video's packets once (no decoding) and keeps every frame's presentation timestamp (pts).
Frame ``i`` is the ``i``-th smallest pts, so shards are frame-exact for constant and variable frame rates alike:
a shard carries the sorted pts of its frames, decoding seeks to the keyframe at or before the first (PyAV
``container.seek(pts, stream=..., backward=True, any_frame=False)``) and keeps exactly the frames whose pts it
lists. No gaps, no duplicates, whatever the GOP structure. Streams without timestamps fall back to one sequential
shard counted in decode order.

Images are sharded by position in the unit's natural-sorted file list. Everything here is plain Python (no Ray):
the pipeline runs ``decode_shard`` as a generator UDF in CPU tasks, and tests call it directly.

**Correspondences for tracking** (``decode_shard(..., orb=OrbParams())``): each decoded frame ``i`` also carries the
ORB point pairs between frame ``i − 1`` and frame ``i`` (``models.correspondences``; AlphaPose
``trackers/PoseFlow/tracker-general.py`` matches every consecutive pair before tracking), computed here because
only this stage has the pixels. Every shard but a unit's first also decodes its **leading frame**
``start − 1`` (planned by ``plan_shards`` as ``lead_pts`` / ``lead_frame``) for its features only, so the pair that
straddles a shard boundary is produced exactly once, by the later shard, and the leading frame is never emitted.
Columns: ``correspondences`` int16 ``[M, 4]`` (x, y in frame i − 1, x, y in frame i) per frame and
``correspondence_kind`` (values in ``store.schema``: ``CORR_NONE`` no pair: first frame, or correspondences off;
``CORR_PAIRS``; ``CORR_IDENTITY`` AlphaPose's identity fallback, carried as this flag, never as per-pixel rows).
Every row has both columns, so all blocks share one schema.

**Displayed orientation.** Frames are labelled as a person sees them. Images: OpenCV's ``IMREAD_COLOR`` applies the
EXIF orientation. Videos: phones store frames as the sensor saw them and add a display matrix (``rotate`` tag in
older tools) saying how to turn them for display; decoding turns each frame the way FFmpeg's ``autorotate`` does, so
``image_width``/``image_height`` (and ``VideoProbe.width``/``height``) are the displayed size, and the ``rotation``
column records the quarter turn applied to video frames (degrees clockwise, 0/90/180/270, ``_rotation_cw``; 0 for
images, whose EXIF turn OpenCV applies without reporting it). Keypoints, boxes and ORB pairs are all in displayed
pixels.

A failing probe or decode never raises to the caller: it yields an **error row** (``error`` non-empty, ``stage``
naming where) so the job records it and goes on with everything else. **Every declared frame is accounted for**: a
frame the shard planned but the stream did not deliver (a truncated file, a packet the codec rejects) becomes an
error row of its own (``frame_index`` set), and the frames a container declares beyond its last packet (an mp4 whose
index lists 24 frames but whose data stops after 9) are planned as a tail shard that decodes to error rows
"stream ended at frame 9 of 24 declared (truncated file?)". Only a shard that fails as a whole (unreadable at decode
time) gives one row with ``frame_index`` −1.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from store.schema import CORR_IDENTITY, CORR_NONE, CORR_PAIRS
from store.sources import WorkUnit

if TYPE_CHECKING:
    from models.correspondences import OrbParams

logger = logging.getLogger(__name__)

__all__ = [
    "VideoProbe",
    "probe_video",
    "plan_shards",
    "decode_shard",
    "error_row",
    "to_display",
    "probe_batch",
    "decode_batch",
]


@dataclass(frozen=True)
class VideoProbe:
    """What the probe learned: ``pts`` (int64, sorted, one per demuxed frame) is None for streams without timestamps.

    ``num_frames`` counts the frames the container declares when it declares more than it holds packets for (a
    truncated file: ``declared_frames`` > ``len(pts)``), else the demuxed frames; ``declared_frames`` is the
    container's own count (0: not declared). ``width``/``height`` are the displayed size, after ``rotation`` (degrees
    clockwise, module docstring).
    """

    num_frames: int
    time_base: Fraction
    pts: np.ndarray | None
    width: int
    height: int
    rotation: int = 0
    declared_frames: int = 0


def _open(uri: str, storage_options: dict | None):
    import av
    import fsspec

    f = fsspec.open(uri, "rb", **(storage_options or {})).open()
    try:
        return av.open(f), f
    except Exception:
        empty = _is_empty(f)
        f.close()
        if empty:  # FFmpeg says only "[Errno 22] Invalid argument" for a zero-byte file
            raise _empty_file(uri) from None
        raise


def _is_empty(f) -> bool:
    """Whether the open file ``f`` holds no bytes (asked only after a failure, so a healthy input costs nothing)."""
    try:
        return f.seek(0, 2) == 0
    except Exception:
        return False


def _empty_file(uri: str) -> ValueError:
    return ValueError(f"{uri}: file is empty (0 bytes)")


_WARNED_ANGLES: set[float] = set()


def _rotation_cw(ccw_degrees: float) -> int:
    """The clockwise quarter turn (0, 90, 180 or 270) that shows a frame whose display matrix rotates by
    ``ccw_degrees`` counter-clockwise.

    ``ccw_degrees`` is ``av_display_rotation_get`` of the display matrix (PyAV ``VideoFrame.rotation``: "the angle by
    which the transformation rotates the frame counterclockwise", libavutil/display.h). FFmpeg's ``autorotate``
    (fftools/ffmpeg_filter.c, ``get_rotation`` in fftools/cmdutils.c) turns the frame by
    ``theta = -ccw_degrees`` clockwise: theta 90 → ``transpose=clock``, 180 → ``hflip,vflip``, 270 →
    ``transpose=cclock``. A phone's portrait video has a matrix of −90 (``ffprobe``: "rotation of -90.00 degrees",
    legacy tag ``rotate=90``): turn 90° clockwise. Angles that are no quarter turn (FFmpeg would insert a ``rotate``
    filter) are left alone (0), and so are mirrored matrices' flips (only their rotation is applied).
    """
    cw = -float(ccw_degrees) % 360.0
    quarter = int(round(cw / 90.0)) % 4
    if abs(cw - 90.0 * round(cw / 90.0)) > 1.0:  # FFmpeg's own tolerance for "is it 90/180/270"
        if ccw_degrees not in _WARNED_ANGLES:  # once per angle and process: this runs for every frame
            _WARNED_ANGLES.add(ccw_degrees)
            logger.warning("display rotation of %.1f° is not a quarter turn; frames are left as stored", ccw_degrees)
        return 0
    return 90 * quarter


def to_display(rgb: np.ndarray, rotation_cw: int) -> np.ndarray:
    """Turn a stored frame ``[H, W, C]`` clockwise by ``rotation_cw`` (0, 90, 180, 270) degrees: the frame as shown.

    Returns a C-contiguous array (a copy unless ``rotation_cw`` is 0), ``[W, H, C]`` for 90 and 270.
    ``np.rot90`` turns counter-clockwise for positive ``k``, hence ``k = -rotation_cw / 90``.
    """
    if rotation_cw == 0:
        return rgb
    return np.ascontiguousarray(np.rot90(rgb, k=-(rotation_cw // 90)))


def _displayed(frame) -> tuple[np.ndarray, int]:
    """A decoded PyAV frame as uint8 RGB in displayed orientation, and the clockwise rotation applied."""
    rotation = _rotation_cw(frame.rotation)
    return to_display(frame.to_ndarray(format="rgb24"), rotation), rotation


def probe_video(uri: str, storage_options: dict | None = None) -> VideoProbe:
    """Demux every packet of the first video stream, decoding only until its first frame (for the display rotation);
    raises on unreadable input (``ValueError`` naming the file when it is empty) or a stream with no frames."""
    container, f = _open(uri, storage_options)
    try:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_count = 1  # a few packets are decoded, at most
        declared = int(stream.frames or 0)  # the container's count (mp4: the sample table), 0 when not declared
        pts, missing = [], 0
        rotation: int | None = None
        for packet in container.demux(stream):
            if packet.size == 0:  # flush packets carry no frame
                continue
            if packet.pts is None:
                missing += 1
            else:
                pts.append(packet.pts)
            if rotation is None and len(pts) + missing <= _ROTATION_PACKETS:
                rotation = _first_rotation(stream, packet)
        n = len(pts) + missing
        if n == 0:
            hint = f" (the container declares {declared}: truncated file?)" if declared else ""
            raise ValueError(f"video has no frames{hint}")
        arr = None
        if missing == 0:
            arr = np.unique(np.asarray(pts, dtype=np.int64))
            if len(arr) != n:  # duplicate timestamps: order by pts is ambiguous, count in decode order instead
                arr = None
        rotation = rotation or 0
        w, h = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        return VideoProbe(
            num_frames=max(n, declared),
            time_base=stream.time_base or Fraction(1, 1),
            pts=arr,
            width=h if rotation in (90, 270) else w,
            height=w if rotation in (90, 270) else h,
            rotation=rotation,
            declared_frames=declared,
        )
    finally:
        container.close()
        f.close()


# Packets the probe may decode to find the first frame's rotation: a decoder with one thread returns its first frame
# after the reorder delay (a few packets); a stream whose first packets all fail gives up here, not after the video.
_ROTATION_PACKETS = 32


def _first_rotation(stream, packet) -> int | None:
    """The display rotation of the first frame the decoder returns for ``packet`` (None: no frame yet, or the packet
    does not decode; decoding then reports it). The display matrix reaches frames as side data (FFmpeg copies the
    stream's to every decoded frame), which PyAV reads as ``VideoFrame.rotation``."""
    try:
        frames = stream.decode(packet)
    except Exception:
        return None
    return _rotation_cw(frames[0].rotation) if frames else None


def plan_shards(unit: WorkUnit, shard_frames: int, probe: VideoProbe | None = None) -> list[dict]:
    """Split a unit into frame ranges ``[start, end)`` of at most ``shard_frames`` frames.

    Args:
        unit: the work unit.
        shard_frames: frames per shard (≫ GOP length for videos: every shard re-decodes from a keyframe).
        probe: the video's probe (required for videos).
    Returns:
        Shard descriptors (plain dicts, cheap to ship): ``video_id, source_uri, kind, shard_index, start, end,
        num_frames`` plus ``pts`` (int64 list of the shard's frames' pts, or None), ``lead_pts`` (pts of frame
        ``start − 1``, None for the first shard) and ``time_base`` (num, den) for videos; ``frames`` (URIs) and
        ``lead_frame`` (URI of image ``start − 1`` or None) for images. A truncated video (``probe.num_frames``
        frames declared, fewer demuxed) gets one more shard over the frames without packets, carrying ``error``
        ("stream ended at frame …") and ``stage`` ``"decode"``: it decodes to one error row per frame.
    """
    if shard_frames < 1:
        raise ValueError(f"shard_frames must be ≥ 1, got {shard_frames}")
    base = {"video_id": unit.video_id, "source_uri": unit.source_uri, "kind": unit.kind}
    if unit.kind == "images":
        n = len(unit.frames)
        return [
            {
                **base,
                "shard_index": i,
                "start": s,
                "end": min(s + shard_frames, n),
                "num_frames": n,
                "frames": list(unit.frames[s : s + shard_frames]),
                "lead_frame": unit.frames[s - 1] if s > 0 else None,
            }
            for i, s in enumerate(range(0, n, shard_frames))
        ]
    if probe is None:
        raise ValueError("plan_shards needs the probe of a video unit")
    n = probe.num_frames
    tb = (probe.time_base.numerator, probe.time_base.denominator)
    if probe.pts is None:  # no timestamps: one shard decoded sequentially (frames short of n become error rows)
        return [
            {
                **base,
                "shard_index": 0,
                "start": 0,
                "end": n,
                "num_frames": n,
                "pts": None,
                "time_base": tb,
                "first_pts": 0,
                "lead_pts": None,
            }
        ]
    first = int(probe.pts[0])
    m = len(probe.pts)  # frames with packets; n > m when the container declares more (truncated file)
    shards = [
        {
            **base,
            "shard_index": i,
            "start": s,
            "end": min(s + shard_frames, m),
            "num_frames": n,
            "pts": probe.pts[s : s + shard_frames].tolist(),
            "time_base": tb,
            "first_pts": first,
            "lead_pts": int(probe.pts[s - 1]) if s > 0 else None,
        }
        for i, s in enumerate(range(0, m, shard_frames))
    ]
    if n > m:  # declared frames without packets: one tail shard that decodes nothing and reports them
        shards.append(
            {
                **base,
                "shard_index": len(shards),
                "start": m,
                "end": n,
                "num_frames": n,
                "pts": [],
                "time_base": tb,
                "first_pts": first,
                "lead_pts": None,
                "error": _ended(m, n),
                "stage": "decode",
            }
        )
    return shards


def _ended(frame: int, num_frames: int) -> str:
    return f"stream ended at frame {frame} of {num_frames} declared (truncated file?)"


def error_row(
    shard: dict, stage: str, exc: BaseException | str, frame_index: int | Sequence[int] = -1, source: str | None = None
) -> dict[str, np.ndarray]:
    """A batch recording a failure of ``stage`` on ``shard``: one row per frame of ``frame_index`` (one int, or a
    sequence for one row each; ``-1`` = the whole shard), each with a 0×0 image and the same message."""
    msg = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    index = np.atleast_1d(np.asarray(frame_index, np.int64))
    k = len(index)
    return _batch(
        shard,
        index.tolist(),
        [float("nan")] * k,
        np.zeros((k, 0, 0, 3), np.uint8),
        error=msg[:2000],
        stage=stage,
        sources=[source or shard["source_uri"]] * k,
    )


def _frame_keys(shard: dict, index: list[int], sources: list[str]) -> list[str]:
    """Per-frame keys for precomputed detections: the image URI, or ``<video name>/<frame_index>.jpg``.

    The video form ends in AlphaPose's frame naming (``<frame_index>.jpg``), so a detections file keyed by frame
    name matches by basename, and one keyed by ``<video>/<frame>.jpg`` matches a single video exactly.
    """
    if shard["kind"] == "images":
        return list(sources)
    name = shard["source_uri"].rsplit("/", 1)[-1]
    return [f"{name}/{i}.jpg" for i in index]


def _batch(
    shard: dict,
    index: list[int],
    ts: list[float],
    frames: np.ndarray,
    error: str = "",
    stage: str = "",
    sources: list[str] | None = None,
    pairs: list[tuple[np.ndarray, int, float]] | None = None,
    rotation: int = 0,
) -> dict[str, np.ndarray]:
    """A batch of frame rows; ``sources`` are the rows' files (image units), by default the unit's URI; ``pairs``
    the rows' (correspondences, kind, seconds) from ``_Pairs`` (default: none); ``rotation`` the clockwise degrees
    the stored frames were turned to be ``frames`` (displayed orientation, module docstring)."""
    k = len(index)
    sources = sources if sources is not None else [shard["source_uri"]] * k
    pairs = pairs if pairs is not None else [_NO_PAIRS] * k
    corr = np.empty(k, dtype=object)
    for i, (c, _, _) in enumerate(pairs):
        corr[i] = c
    return {
        "frame_key": np.array(_frame_keys(shard, index, sources), dtype=object),
        "video_id": np.array([shard["video_id"]] * k, dtype=object),
        "unit_uri": np.array([shard["source_uri"]] * k, dtype=object),
        "source_uri": np.array(sources, dtype=object),
        "kind": np.array([shard["kind"]] * k, dtype=object),
        "shard_index": np.full(k, shard["shard_index"], np.int64),
        "num_frames": np.full(k, shard.get("num_frames", -1), np.int64),
        "frame_index": np.asarray(index, np.int64),
        "timestamp_s": np.asarray(ts, np.float64),
        "image_width": np.full(k, frames.shape[2] if frames.ndim == 4 else 0, np.int32),
        "image_height": np.full(k, frames.shape[1] if frames.ndim == 4 else 0, np.int32),
        "rotation": np.full(k, rotation, np.int16),
        "frame": frames,
        "error": np.array([error] * k, dtype=object),
        "stage": np.array([stage] * k, dtype=object),
        "correspondences": corr,
        "correspondence_kind": np.array([kind for _, kind, _ in pairs], np.int8),
        "t_orb": np.array([secs for _, _, secs in pairs], np.float64),
    }


_NO_PAIRS = (np.zeros((0, 4), np.int16), CORR_NONE, 0.0)


class _Pairs:
    """ORB pairs between consecutive frames, each frame's features computed once (``models.correspondences``).

    ``add(i, frame)`` returns frame ``i``'s (pairs from frame i − 1, kind, seconds); pairs exist only when the
    previous call was frame ``i − 1``. With ``params=None`` (correspondences off) nothing is computed.
    """

    def __init__(self, params) -> None:
        self.params = params
        self._prev = None
        self._prev_index: int | None = None
        if params is not None:
            import cv2

            from models.correspondences import match_features, orb_features  # imported here, not timed per frame

            self._features, self._match = orb_features, match_features
            # One core per decode task, as for the codec: OpenCV's own thread pool would oversubscribe the CPUs that
            # the other decode tasks and the actors are using (the parallelism comes from tasks).
            cv2.setNumThreads(1)

    def add(self, index: int, frame: np.ndarray) -> tuple[np.ndarray, int, float]:
        if self.params is None:
            return _NO_PAIRS
        t0 = time.perf_counter()
        features = self._features(frame, self.params)
        out = _NO_PAIRS[:2]
        if self._prev is not None and self._prev_index == index - 1:
            pairs = self._match(self._prev, features, self.params)
            out = (pairs, CORR_PAIRS) if pairs is not None else (_NO_PAIRS[0], CORR_IDENTITY)
        self._prev, self._prev_index = features, index
        return (*out, time.perf_counter() - t0)


def _decode_video(shard: dict, chunk: int, storage_options: dict | None, orb=None) -> Iterator[dict[str, np.ndarray]]:
    tb = Fraction(*shard["time_base"])
    start, end = shard["start"], shard["end"]
    pts_list = shard.get("pts")
    lead_pts = shard.get("lead_pts") if orb is not None else None  # frame start − 1: features only, not emitted
    pairs = _Pairs(orb)
    container, f = _open(shard["source_uri"], storage_options)
    idx: list[int] = []
    ts: list[float] = []
    frames: list[np.ndarray] = []
    corr: list[tuple[np.ndarray, int, float]] = []
    emitted = np.zeros(end - start, bool)  # which of the shard's frames became frame rows
    chunk_rotation = [0]  # the rotation of the frames in the current chunk (one per batch: one frame shape)

    def keep(i: int, t: float, frame) -> dict[str, np.ndarray] | None:
        """Add frame ``i`` to the chunk; returns the previous chunk when the rotation changed (a new frame shape)."""
        rgb, rotation = _displayed(frame)
        out = flush() if frames and rotation != chunk_rotation[0] else None
        chunk_rotation[0] = rotation
        idx.append(i)
        ts.append(t)
        frames.append(rgb)
        corr.append(pairs.add(i, rgb))
        emitted[i - start] = True
        return out

    def flush():
        out = _batch(shard, idx.copy(), ts.copy(), np.stack(frames), pairs=corr.copy(), rotation=chunk_rotation[0])
        idx.clear(), ts.clear(), frames.clear(), corr.clear()
        return out

    failure: Exception | None = None
    try:
        stream = container.streams.video[0]
        stream.thread_count = 1  # one core per decode task: parallelism comes from tasks, not codec threads
        if pts_list is None:
            # No timestamps: decode order is frame order; count frames. (Always one shard from frame 0.)
            for i, frame in enumerate(container.decode(stream)):
                if i >= end:
                    break
                if i >= start:
                    if (out := keep(i, float("nan"), frame)) is not None:
                        yield out
                    if len(frames) == chunk:
                        yield flush()
        else:
            wanted = np.asarray(pts_list, dtype=np.int64)
            if start > 0:
                first = lead_pts if lead_pts is not None else int(wanted[0])
                container.seek(int(first), stream=stream, backward=True, any_frame=False)
            got = 0
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                if frame.pts > wanted[-1]:
                    break
                if lead_pts is not None and frame.pts == lead_pts:
                    pairs.add(start - 1, _displayed(frame)[0])  # in displayed pixels, as the frames it pairs with
                    continue
                j = int(np.searchsorted(wanted, frame.pts))
                if j >= len(wanted) or wanted[j] != frame.pts:
                    continue  # a frame decoded only to reach the shard's first one
                if (out := keep(start + j, float((frame.pts - shard["first_pts"]) * tb), frame)) is not None:
                    yield out
                got += 1
                if len(frames) == chunk:
                    yield flush()
                if got == len(wanted):
                    break
    except Exception as e:  # keep the frames decoded so far, then report the frames it cost
        failure = e
        logger.warning("decode failed for %s shard %s: %s", shard["video_id"], shard["shard_index"], e)
    finally:
        container.close()
        f.close()
    if frames:
        yield flush()
    yield from _undelivered(shard, emitted, failure)


def _undelivered(shard: dict, emitted: np.ndarray, failure: Exception | None) -> Iterator[dict[str, np.ndarray]]:
    """Error rows, one per frame, for the shard's frames that did not become frame rows (``emitted`` False).

    Frames after the last decoded one, without an exception, mean the stream ended early; frames before it were
    skipped by the decoder; with an exception, its message explains them all.
    """
    missing = np.flatnonzero(~emitted)
    if not len(missing):
        return
    start, n = shard["start"], shard.get("num_frames", -1)
    first = start + int(missing[0])
    if failure is not None:
        msg = f"decoding stopped at frame {first} of {n}: {type(failure).__name__}: {failure}"
        yield error_row(shard, "decode", msg, frame_index=start + missing)
        return
    last_good = int(np.flatnonzero(emitted)[-1]) if emitted.any() else -1
    skipped, tail = missing[missing < last_good], missing[missing > last_good]
    if len(skipped):
        yield error_row(shard, "decode", "frame not returned by the decoder (corrupt data?)", start + skipped)
    if len(tail):
        yield error_row(shard, "decode", _ended(start + int(tail[0]), n), frame_index=start + tail)


def _read_image(uri: str, storage_options: dict | None) -> np.ndarray:
    import fsspec

    from models.images import decode_image

    with fsspec.open(uri, "rb", **(storage_options or {})) as f:
        data = f.read()
    if not data:
        raise _empty_file(uri)
    return decode_image(data)


def _decode_images(shard: dict, storage_options: dict | None, orb=None) -> Iterator[dict[str, np.ndarray]]:
    pairs = _Pairs(orb)
    if orb is not None and shard.get("lead_frame"):
        try:
            pairs.add(shard["start"] - 1, _read_image(shard["lead_frame"], storage_options))
        except Exception:  # the previous shard reports that image; without it the first pair is simply absent
            pass
    for offset, uri in enumerate(shard["frames"]):
        i = shard["start"] + offset
        try:
            rgb = _read_image(uri, storage_options)
        except Exception as e:  # one bad image is one error row; the shard goes on
            yield error_row(shard, "decode", e, frame_index=i, source=uri)
            continue
        # images have no clock: NaN time
        yield _batch(shard, [i], [float("nan")], rgb[None], sources=[uri], pairs=[pairs.add(i, rgb)])


def decode_shard(
    shard: dict, chunk: int = 16, storage_options: dict | None = None, orb=None
) -> Iterator[dict[str, np.ndarray]]:
    """Decode one shard into batches of at most ``chunk`` frames (uint8 RGB ``[n, H, W, 3]``).

    ``orb`` (a ``models.correspondences.OrbParams``, or None for no correspondences) adds each frame's ORB pairs
    with the frame before it (module docstring).

    Frames of a video shard come in presentation order with their global ``frame_index``, in displayed orientation
    (``rotation`` column, module docstring). Every frame of ``[start, end)`` comes out once, as a frame row or as an
    error row (stage ``"decode"``) saying why it did not decode (the stream ended early, the decoder raised or
    skipped it), after whatever frames were decoded before; a shard unreadable as a whole (the file cannot be
    opened) is one error row with ``frame_index`` −1, its frames reported downstream from ``num_frames``.
    """
    if shard.get("error"):
        stage = shard.get("stage") or "probe"
        # a truncated video's tail shard (stage "decode"): one row per frame; a probe failure: one row, frame −1
        frames = list(range(shard["start"], shard["end"])) if stage == "decode" else []
        yield error_row(shard, stage, shard["error"], frame_index=frames or -1)
        return
    try:
        if shard["kind"] == "images":
            yield from _decode_images(shard, storage_options, orb)
        else:
            yield from _decode_video(shard, chunk, storage_options, orb)
    except Exception as e:
        logger.warning("decode failed for %s shard %s: %s", shard["video_id"], shard["shard_index"], e)
        yield error_row(shard, "decode", e)


def video_frames(
    uri: str, wanted: list[int], storage_options: dict | None = None, shard_frames: int = 256
) -> Iterator[tuple[int, np.ndarray | str]]:
    """The frames ``wanted`` (frame indices, any order) of one video, exactly as ``jobs.label`` decoded them: the
    same probe, frame-exact shards and displayed orientation (``decode_shard``). Yields ``(frame_index, rgb)`` in
    increasing frame order, or ``(frame_index, reason)`` for a wanted frame that did not decode; only the shards
    holding wanted frames are decoded. Used to read pseudo-labelled video frames back (``pipelines.proposals``).
    """
    need = sorted(set(int(i) for i in wanted))
    if not need:
        return
    try:
        probe = probe_video(uri, storage_options)
    except Exception as e:  # noqa: BLE001 - every wanted frame is then unreadable, for this reason
        for i in need:
            yield i, f"probe failed: {type(e).__name__}: {e}"
        return
    unit = WorkUnit(video_id="frames", source_uri=uri, kind="video", fingerprint="", frames=())
    pending = set(need)
    for shard in plan_shards(unit, shard_frames, probe):
        if not any(shard["start"] <= i < shard["end"] for i in pending):
            continue
        for batch in decode_shard(shard, chunk=16, storage_options=storage_options):
            for r, i in enumerate(batch["frame_index"].tolist()):
                if i == -1 and batch["error"][r]:  # the shard as a whole did not decode: its wanted frames say why
                    for j in sorted(j for j in pending if shard["start"] <= j < shard["end"]):
                        pending.discard(j)
                        yield j, str(batch["error"][r])
                    continue
                if i not in pending:
                    continue
                pending.discard(i)
                err = str(batch["error"][r])
                yield (i, err) if err else (i, batch["frame"][r])
            if not pending:
                return
    for i in sorted(pending):
        yield i, f"frame {i} is beyond the video's {probe.num_frames} frames"


def probe_batch(batch: dict, shard_frames: int, storage_options: dict) -> dict:
    """Probe each unit of a batch (Ray Data rows of ``WorkUnit`` fields) and return its shard descriptors (an error
    shard when probing fails). A Ray task function: this module imports no torch, so the CPU-task workers that run
    it stay small."""
    out: list[dict] = []
    for i in range(len(batch["video_id"])):
        unit = WorkUnit(
            video_id=str(batch["video_id"][i]),
            source_uri=str(batch["source_uri"][i]),
            kind=str(batch["kind"][i]),
            fingerprint="",
            frames=tuple(batch["frames"][i]),
        )
        try:
            probe = probe_video(unit.source_uri, storage_options) if unit.kind == "video" else None
            out += plan_shards(unit, shard_frames, probe)
        except Exception as e:
            out.append(
                {
                    "video_id": unit.video_id,
                    "source_uri": unit.source_uri,
                    "kind": unit.kind,
                    "shard_index": 0,
                    "start": 0,
                    "end": 0,
                    "num_frames": 0,
                    "error": f"{type(e).__name__}: {e}"[:2000],
                    "stage": "probe",
                }
            )
    return {"shard_json": np.array([json.dumps(s) for s in out], dtype=object)}


def decode_batch(batch: dict, chunk: int, storage_options: dict, orb: OrbParams | None = None) -> Iterator[dict]:
    """Decode each shard of a batch (``shard_json`` rows) into frame batches of ``chunk`` frames (``decode_shard``),
    with the decode seconds per frame in ``t_decode``. A Ray task function, like ``probe_batch``."""
    for s in batch["shard_json"]:
        shard = json.loads(s)
        t0 = time.perf_counter()
        for out in decode_shard(shard, chunk=chunk, storage_options=storage_options, orb=orb):
            n = len(out["frame_index"])
            out["t_decode"] = np.full(n, (time.perf_counter() - t0 - float(np.sum(out["t_orb"]))) / max(n, 1))
            t0 = time.perf_counter()
            yield out
