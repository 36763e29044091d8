"""PoseFlow tracking speed and quality on the Bonn PoseTrack clip (41 frames, 4 people, 960×540).

    python -m benchmarks.poseflow [--repeats 5] [--seeds 20] [--out PATH.json] [--skip-flann]
                                  [--windows 48,24,16] [--workers 2]

Speed: the ground-truth poses of ``../shared/data/bonn_posetrack/060470979`` are tracked with
``models.poseflow.PoseFlowTracker`` in pose-only mode (``correspondences=None``, AlphaPose's identity fallback computed
analytically) and in ORB mode (``models.correspondences``: each frame's ORB features once, then one match per
consecutive pair, then ``filter_for_tracking``), for ``mode="released"`` and ``mode="improved"``. The ORB time covers
features + matching (``video_correspondences``) + filtering + tracking from decoded frames; decoding the MP4 (PyAV)
is reported separately. ORB rows, one per config (``OrbConfig``): the default exact "bruteforce" matcher, the
"windowed" matcher for each of ``--windows``, each also with ``--workers`` threads (``video_correspondences(...,
workers=N)``; the rows without "×N" compute frame by frame in one Python thread, as the pipeline's decode stage
does, OpenCV's own threads included), and AlphaPose's FLANN unless ``--skip-flann``. Single-thread components (ORB
features per frame, matching per pair) are printed first, and each windowed matcher's agreement with bruteforce
(pairs in common over the 40 consecutive pairs). Times are the best of ``--repeats`` passes (other processes on the
machine inflate single runs). AlphaPose's released tracker needs about 60 s for this clip in ORB mode (issue 6);
targets: ≤ 0.6 s ORB, ≤ 0.05 s pose-only; ``targets`` in the JSON lists the ORB configs that meet it.

Quality: seeded perturbation scenarios built from the ground truth (``SCENARIOS``: jitter, dropped detections,
occlusion gaps, skipped frames, false positives, all combined) are tracked pose-only and with ORB correspondences
(the default matcher, then the windowed matcher for each window) and scored with ``models.tracking_metrics`` (box
IoU ≥ 0.5 between the tight keypoint boxes of GT and prediction): ID switches, MOTA, IDF1, and the tracking time per
scenario. The tests import this module for the same scenarios.

Everything is printed as tables and written to ``benchmarks/results/poseflow.json``.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # Must precede the NumPy import to take effect; only when run as a script.
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import itertools
import json
import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.correspondences import (
    OrbFeatures,
    OrbParams,
    filter_for_tracking,
    match_features,
    orb_features,
    video_correspondences,
)
from models.poseflow import PoseFlowParams, PoseFlowTracker
from models.tracking_metrics import TrackingMetrics, evaluate_tracking, keypoint_boxes

__all__ = [
    "BonnClip",
    "Scenario",
    "SCENARIOS",
    "load_bonn_clip",
    "decode_frames",
    "make_scenario",
    "track_scenario",
    "evaluate_scenario",
    "OrbCache",
    "OrbConfig",
    "main",
]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "poseflow.json"
CLIP = "060470979"

SCENARIOS = (
    "clean",
    "jitter",
    "dropped",
    "occlusion",
    "skipped",
    "skipped_5",
    "false_positives",
    "false_positives_4",
    "combined",
)


@dataclass(frozen=True)
class BonnClip:
    """Ground truth of the Bonn clip: every person in every frame."""

    keypoints: np.ndarray  # float64 [T, P, K, 2] pixels (CrowdPose-14 order)
    visible: np.ndarray  # int64 [T, P, K]: 2 visible, 1 occluded but labelled
    track_ids: np.ndarray  # int64 [P]
    image_size: tuple[int, int]  # (W, H)
    frame_paths: tuple[Path, ...]
    video_path: Path

    @property
    def num_frames(self) -> int:
        return self.keypoints.shape[0]


def load_bonn_clip(data_dir: Path = DEFAULT_DATA) -> BonnClip:
    """Read ``bonn_posetrack/060470979.json`` (format: ``../shared/data/README.md``) into dense arrays."""
    root = Path(data_dir) / "bonn_posetrack"
    gt = json.loads((root / f"{CLIP}.json").read_text())
    images = sorted(gt["images"], key=lambda im: im["frame_id"])  # true frame order, not file-name order
    frame_of = {im["id"]: im["frame_id"] for im in images}
    track_ids = np.array(sorted({a["track_id"] for a in gt["annotations"]}), dtype=np.int64)
    person_of = {int(t): i for i, t in enumerate(track_ids)}
    k = len(gt["categories"][0]["keypoints"])
    kp = np.full((len(images), len(track_ids), k, 2), np.nan)
    vis = np.zeros((len(images), len(track_ids), k), dtype=np.int64)
    for a in gt["annotations"]:
        triples = np.asarray(a["keypoints"], dtype=np.float64).reshape(k, 3)
        t, p = frame_of[a["image_id"]], person_of[a["track_id"]]
        kp[t, p] = triples[:, :2]
        vis[t, p] = triples[:, 2].astype(np.int64)
    if np.isnan(kp).any():
        raise ValueError(f"{root / CLIP}.json: expected every person in every frame")
    size = (int(images[0]["width"]), int(images[0]["height"]))
    return BonnClip(kp, vis, track_ids, size, tuple(root / im["file_name"] for im in images), root / f"{CLIP}.mp4")


def decode_frames(video_path: Path) -> list[np.ndarray]:
    """All frames of a video as uint8 ``[H, W, 3]`` RGB (PyAV)."""
    import av

    with av.open(str(video_path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@dataclass(frozen=True)
class Scenario:
    """Detections the tracker sees: a subset of the clip's frames, each with perturbed GT poses."""

    name: str
    seed: int
    frame_indices: np.ndarray  # int64 [F]: clip frame of each tracked frame, increasing
    keypoints: list[np.ndarray] = field(repr=False)  # per tracked frame, float64 [N_t, K, 2]
    keypoint_scores: list[np.ndarray] = field(repr=False)  # [N_t, K]
    scores: list[np.ndarray] = field(repr=False)  # [N_t]
    gt_person: list[np.ndarray] = field(repr=False)  # [N_t] int64: index of the GT person, -1 = false positive


def _scenario_settings(name: str) -> dict:
    # Noise levels are fractions of a person's size (sqrt of its keypoint-box area; ≈ 100–210 px here) so that
    # they mean the same for near and far people.
    base = dict(jitter=0.0, drop=0.0, gaps=(0, 0), stride=1, false_positives=0.0)
    return (
        base
        | {
            "clean": {},
            "jitter": dict(jitter=0.06),
            "dropped": dict(drop=0.3),
            "occlusion": dict(gaps=(6, 16)),
            "skipped": dict(stride=3),
            "skipped_5": dict(stride=5),
            "false_positives": dict(false_positives=1.5),
            "false_positives_4": dict(false_positives=4.0),
            "combined": dict(jitter=0.03, drop=0.15, gaps=(4, 10), stride=2, false_positives=0.7),
        }[name]
    )


def make_scenario(clip: BonnClip, name: str, seed: int = 0) -> Scenario:
    """A seeded perturbation of the ground truth (``SCENARIOS``).

    * jitter: Gaussian noise on every keypoint, σ = ``jitter`` × person size, independent per frame.
    * dropped: each detection disappears with probability ``drop``.
    * occlusion: each person vanishes for one run of consecutive frames, length uniform in ``gaps``.
    * skipped: the tracker sees every ``stride``-th frame only (random phase), as with a lower frame rate.
    * false_positives: Poisson(``false_positives``) extra poses per frame: a random GT pose, rescaled ×0.5–1.2 and
      moved to a random place, with low scores.
    Keypoint scores are 0.9 for visible and 0.5 for occluded GT keypoints (a detector's typical levels), 0.05–0.4
    for false positives; the person score is the mean keypoint score. Rows are shuffled in every frame.
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    s = _scenario_settings(name)
    rng = np.random.default_rng([seed, SCENARIOS.index(name)])
    t_all, p_all, k = clip.keypoints.shape[:3]
    w, h = clip.image_size
    present = np.ones((t_all, p_all), dtype=bool)
    if s["drop"]:
        present &= rng.random((t_all, p_all)) >= s["drop"]
    if s["gaps"][1]:
        for p in range(p_all):
            length = int(rng.integers(s["gaps"][0], s["gaps"][1] + 1))
            start = int(rng.integers(1, t_all - length))  # never the first or last frame: a gap, not a cut
            present[start : start + length, p] = False
    stride = s["stride"]
    frames = np.arange(int(rng.integers(0, stride)) if stride > 1 else 0, t_all, stride, dtype=np.int64)
    lo = clip.keypoints.min(axis=2)
    hi = clip.keypoints.max(axis=2)
    size = np.sqrt(np.prod(hi - lo, axis=-1))  # [T, P]
    out_kp, out_kps, out_sc, out_gt = [], [], [], []
    for t in frames.tolist():
        people = np.flatnonzero(present[t])
        kp = clip.keypoints[t, people].copy()
        if s["jitter"]:
            kp += rng.normal(0.0, 1.0, kp.shape) * (s["jitter"] * size[t, people])[:, None, None]
        kps = np.where(clip.visible[t, people] == 2, 0.9, 0.5)
        gt = people.astype(np.int64)
        n_fp = int(rng.poisson(s["false_positives"])) if s["false_positives"] else 0
        if n_fp:
            src = clip.keypoints[rng.integers(0, t_all, n_fp), rng.integers(0, p_all, n_fp)]
            scale = rng.uniform(0.5, 1.2, n_fp)[:, None, None]
            centre = src.mean(axis=1, keepdims=True)
            target = np.stack([rng.uniform(0.1 * w, 0.9 * w, n_fp), rng.uniform(0.2 * h, 0.8 * h, n_fp)], 1)
            fp = (src - centre) * scale + target[:, None, :]
            kp = np.concatenate([kp, fp])
            kps = np.concatenate([kps, rng.uniform(0.05, 0.4, (n_fp, k))])
            gt = np.concatenate([gt, np.full(n_fp, -1, np.int64)])
        order = rng.permutation(len(kp))
        kp, kps, gt = kp[order], kps[order], gt[order]
        out_kp.append(kp)
        out_kps.append(kps)
        out_sc.append(kps.mean(axis=1) if len(kps) else np.zeros(0))
        out_gt.append(gt)
    return Scenario(name, seed, frames, out_kp, out_kps, out_sc, out_gt)


class OrbCache:
    """ORB features per clip frame (computed once) and filtered correspondences per tracked pair of frames.

    ``consecutive`` (optional): ``video_correspondences`` output for these frames, used for the pairs (t − 1, t);
    other pairs are computed on demand from cached features."""

    def __init__(
        self,
        frames: list[np.ndarray],
        params: OrbParams = OrbParams(),
        consecutive: list[np.ndarray | None] | None = None,
    ) -> None:
        self.frames = frames
        self.params = params
        self._features: dict[int, OrbFeatures] = {}
        self._matches: dict[tuple[int, int], np.ndarray | None] = {}
        for t, corr in enumerate(consecutive or []):
            if t:
                self._matches[(t - 1, t)] = corr

    def features(self, t: int) -> OrbFeatures:
        if t not in self._features:
            self._features[t] = orb_features(self.frames[t], self.params)
        return self._features[t]

    def matches(self, t0: int, t1: int) -> np.ndarray | None:
        if (t0, t1) not in self._matches:
            self._matches[(t0, t1)] = match_features(self.features(t0), self.features(t1), self.params)
        return self._matches[(t0, t1)]


def track_scenario(
    clip: BonnClip, scenario: Scenario, params: PoseFlowParams, orb: OrbCache | None = None
) -> list[np.ndarray]:
    """Run the tracker over a scenario; with ``orb``, correspondences relate each frame to the previous frame with
    detections (AlphaPose's pairing in ``tracker-general.py``), filtered with ``filter_for_tracking``."""
    tracker = PoseFlowTracker(params)
    ids = []
    last = None  # (clip frame, keypoints) of the previous frame with detections
    for t, kp, kps, sc in zip(
        scenario.frame_indices.tolist(), scenario.keypoints, scenario.keypoint_scores, scenario.scores
    ):
        corr = None
        if orb is not None and last is not None and len(kp):
            corr = filter_for_tracking(orb.matches(last[0], t), last[1], kp, clip.image_size, params)
        ids.append(tracker.update(kp, kps, sc, clip.image_size, corr))
        if len(kp):
            last = (t, kp)
    return ids


def evaluate_scenario(clip: BonnClip, scenario: Scenario, ids: list[np.ndarray]) -> TrackingMetrics:
    """Metrics against every GT person of every tracked frame (a dropped detection is a miss), box IoU ≥ 0.5
    between tight keypoint boxes."""
    gt_ids = [clip.track_ids for _ in scenario.frame_indices]
    gt_boxes = [keypoint_boxes(clip.keypoints[t]) for t in scenario.frame_indices.tolist()]
    pred_boxes = [keypoint_boxes(kp) if len(kp) else np.zeros((0, 4)) for kp in scenario.keypoints]
    return evaluate_tracking(gt_ids, gt_boxes, ids, pred_boxes, similarity="box_iou", threshold=0.5)


# ----------------------------------------------------------------------------------------------------------------
# Benchmark.
# ----------------------------------------------------------------------------------------------------------------


def _best_of(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


@dataclass(frozen=True)
class OrbConfig:
    """One timed way of computing the clip's correspondences: a matcher (and window) and a number of threads."""

    matcher: str
    window: int | None = None  # "windowed" only
    workers: int = 1  # video_correspondences(workers=...): 1 is the pipeline's frame-by-frame computation

    @property
    def params(self) -> OrbParams:
        return OrbParams(matcher=self.matcher, window=self.window) if self.window else OrbParams(matcher=self.matcher)

    @property
    def label(self) -> str:
        window = f" ±{self.window}" if self.window else ""
        return f"{self.matcher}{window}" + (f" ×{self.workers}" if self.workers > 1 else "")


def _orb_configs(windows: tuple[int, ...], workers: int, skip_flann: bool) -> list[OrbConfig]:
    configs = [OrbConfig("bruteforce")]
    for window in windows:
        configs.append(OrbConfig("windowed", window))
        if workers > 1:
            configs.append(OrbConfig("windowed", window, workers))
    return configs + ([] if skip_flann else [OrbConfig("flann")])


def _row_counts(corr: np.ndarray | None) -> Counter:
    return Counter() if corr is None else Counter(map(tuple, np.asarray(corr).tolist()))


def _agreement(reference: list[np.ndarray | None], other: list[np.ndarray | None]) -> dict:
    """Pairs (rows x_t, y_t, x_t1, y_t1, as multisets) shared with the reference over the clip's consecutive frames."""
    n_ref = n_other = common = identical = 0
    for a, b in zip(reference[1:], other[1:]):
        ca, cb = _row_counts(a), _row_counts(b)
        n_ref += sum(ca.values())
        n_other += sum(cb.values())
        common += sum((ca & cb).values())
        identical += ca == cb
    return dict(
        pairs_reference=n_ref,
        pairs=n_other,
        common=common,
        share_of_reference_found=common / max(n_ref, 1),
        share_in_reference=common / max(n_other, 1),
        identical_frame_pairs=identical,
        frame_pairs=len(reference) - 1,
    )


def _component_times(frames: list[np.ndarray], configs: list[OrbConfig], repeats: int) -> dict:
    """One Python thread (OpenCV's own threads as configured): ORB features of every frame, then each config's
    matching of the consecutive pairs."""
    features_s, features = _best_of(lambda: [orb_features(f) for f in frames], repeats)
    pairs = list(itertools.pairwise(features))
    match_ms = {}
    for config in configs:
        secs, _ = _best_of(
            lambda params=config.params: [match_features(a, b, params) for a, b in pairs],
            1 if config.matcher == "bruteforce" else repeats,
        )  # bruteforce: ~5 s a pass
        match_ms[config.label] = 1000 * secs / len(pairs)
    return dict(features_seconds=features_s, match_ms_per_pair=match_ms)


def _speed_rows(
    clip: BonnClip, frames: list[np.ndarray], repeats: int, configs: list[OrbConfig]
) -> tuple[list[dict], list[dict]]:
    """Pose-only and ORB tracking of the clean clip. The correspondences (``video_correspondences``: features of
    every frame + one match per consecutive pair, as the decode stage computes them) are timed once per config and
    shared by both modes; the tracking time includes ``filter_for_tracking``. Also returns each config's agreement
    with the bruteforce matcher (the first config)."""
    clean = make_scenario(clip, "clean", 0)
    rows, agreement = [], []
    for mode in ("released", "improved"):
        params = PoseFlowParams(mode=mode)
        secs, ids = _best_of(lambda: track_scenario(clip, clean, params), repeats)
        m = evaluate_scenario(clip, clean, ids)
        rows.append(
            dict(
                mode=mode,
                correspondences="pose-only",
                matcher=None,
                window=None,
                workers=1,
                seconds=secs,
                orb_seconds=0.0,
                track_seconds=secs,
                id_switches=m.clear_mot.id_switches,
                idf1=m.identity.idf1,
            )
        )
    reference = None
    for config in configs:
        orb_s, corr = _best_of(
            lambda c=config: video_correspondences(frames, c.params, c.workers),
            1 if config.matcher == "flann" else repeats,
        )
        if reference is None:
            reference = corr
        elif config.workers == 1:
            agreement.append(dict(matcher=config.matcher, window=config.window) | _agreement(reference, corr))
        cache = OrbCache(frames, config.params, consecutive=corr)
        for mode in ("released", "improved"):
            params = PoseFlowParams(mode=mode)
            track_s, ids = _best_of(lambda p=params, c=cache: track_scenario(clip, clean, p, c), repeats)
            m = evaluate_scenario(clip, clean, ids)
            rows.append(
                dict(
                    mode=mode,
                    correspondences="ORB",
                    matcher=config.matcher,
                    window=config.window,
                    workers=config.workers,
                    seconds=orb_s + track_s,
                    orb_seconds=orb_s,
                    track_seconds=track_s,
                    id_switches=m.clear_mot.id_switches,
                    idf1=m.identity.idf1,
                )
            )
    return rows, agreement


def _scenario_rows(clip: BonnClip, seeds: range, orb: OrbCache | None) -> list[dict]:
    rows = []
    for name in SCENARIOS:
        for mode in ("released", "improved"):
            params = PoseFlowParams(mode=mode)
            agg = dict(id_switches=0, fp=0, fn=0, num_gt=0, idtp=0, idfp=0, idfn=0, seconds=0.0)
            for seed in seeds:
                sc = make_scenario(clip, name, seed)
                if orb is not None:
                    track_scenario(clip, sc, params, orb)  # computes (and caches) the ORB pairs, untimed
                secs, ids = _best_of(lambda: track_scenario(clip, sc, params, orb), 3)
                agg["seconds"] += secs
                m = evaluate_scenario(clip, sc, ids)
                agg["id_switches"] += m.clear_mot.id_switches
                agg["fp"] += m.clear_mot.false_positives
                agg["fn"] += m.clear_mot.false_negatives
                agg["num_gt"] += m.clear_mot.num_gt
                agg["idtp"] += m.identity.idtp
                agg["idfp"] += m.identity.idfp
                agg["idfn"] += m.identity.idfn
            mota = 1 - (agg["fn"] + agg["fp"] + agg["id_switches"]) / agg["num_gt"]
            idf1 = 2 * agg["idtp"] / (2 * agg["idtp"] + agg["idfp"] + agg["idfn"])
            rows.append(
                dict(
                    scenario=name,
                    mode=mode,
                    correspondences="ORB" if orb else "pose-only",
                    seeds=[seeds.start, seeds.stop],
                    id_switches=agg["id_switches"],
                    mota=mota,
                    idf1=idf1,
                    ms_per_run=1000 * agg["seconds"] / len(seeds),
                )
            )
    return rows


def _print_scenarios(rows: list[dict]) -> None:
    by = {(r["scenario"], r["mode"]): r for r in rows}
    print(
        f"{'scenario':>16}  {'IDSW rel':>8}  {'IDSW imp':>8}  {'MOTA rel':>8}  {'MOTA imp':>8}  {'IDF1 rel':>8}  "
        f"{'IDF1 imp':>8}  {'ms rel':>7}  {'ms imp':>7}"
    )
    for name in SCENARIOS:
        r, i = by[(name, "released")], by[(name, "improved")]
        print(
            f"{name:>16}  {r['id_switches']:>8}  {i['id_switches']:>8}  {r['mota']:>8.4f}  {i['mota']:>8.4f}  "
            f"{r['idf1']:>8.4f}  {i['idf1']:>8.4f}  {r['ms_per_run']:>7.2f}  {i['ms_per_run']:>7.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.poseflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes (best is reported)")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per scenario")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=10,
        help="first scenario seed (the improved mode's constants were chosen on seeds 0-9)",
    )
    parser.add_argument("--skip-flann", action="store_true", help="skip the slow AlphaPose FLANN matcher row")
    parser.add_argument(
        "--windows",
        type=str,
        default="48,24,16",
        help="comma-separated windows (px) of the windowed matcher rows and scenario tables",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="threads for the threaded rows (video_correspondences(workers=...)); 1 = none",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.seeds < 1 or args.workers < 1:
        parser.error("--repeats, --seeds and --workers must be >= 1")
    try:
        windows = tuple(int(w) for w in args.windows.split(",") if w.strip())
    except ValueError:
        parser.error(f"--windows must be comma-separated ints, got {args.windows!r}")
    import cv2

    clip = load_bonn_clip(args.data)
    decode_s, frames = _best_of(lambda: decode_frames(clip.video_path), args.repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"PoseFlow on the Bonn clip {CLIP}: {clip.num_frames} frames, {clip.keypoints.shape[1]} people, "
        f"{clip.image_size[0]}×{clip.image_size[1]}; best of {args.repeats} (FLANN: 1 run); "
        f"{os.cpu_count()} CPUs, cv2 threads {cv2.getNumThreads()}, load average {load:.1f} at start"
    )
    print(f"decode (PyAV, not included below): {decode_s:.3f} s")
    configs = _orb_configs(windows, args.workers, args.skip_flann)
    components = _component_times(frames, [c for c in configs if c.workers == 1 and c.matcher != "flann"], args.repeats)
    print(
        f"ORB features, {len(frames)} frames, one Python thread: {components['features_seconds']:.3f} s "
        f"({1000 * components['features_seconds'] / len(frames):.1f} ms/frame); matching, ms per pair: "
        + ", ".join(f"{k} {v:.1f}" for k, v in components["match_ms_per_pair"].items())
    )
    speed, agreement = _speed_rows(clip, frames, args.repeats, configs)
    print(
        f"{'mode':>9}  {'correspondences':>24}  {'total s':>8}  {'ORB s':>7}  {'track s':>8}  {'IDSW':>4}  {'IDF1':>6}"
    )
    for r in sorted(speed, key=lambda r: r["mode"] != "released"):
        corr = r["correspondences"]
        if r["matcher"]:
            corr += f" ({OrbConfig(r['matcher'], r['window'], r['workers']).label})"
        print(
            f"{r['mode']:>9}  {corr:>24}  {r['seconds']:>8.3f}  {r['orb_seconds']:>7.3f}  "
            f"{r['track_seconds']:>8.4f}  {r['id_switches']:>4}  {r['idf1']:>6.4f}"
        )
    pose_only = [r for r in speed if r["correspondences"] == "pose-only"]
    orb_default = [r for r in speed if r["matcher"] == OrbParams().matcher and r["workers"] == 1]
    orb_rows = [r for r in speed if r["correspondences"] == "ORB"]
    meeting = [
        c.label
        for c in configs
        if all(
            r["seconds"] <= 0.6
            for r in orb_rows
            if (r["matcher"], r["window"], r["workers"]) == (c.matcher, c.window, c.workers)
        )
    ]
    targets = {
        "pose_only_at_most_0.05s": all(r["seconds"] <= 0.05 for r in pose_only),
        "orb_default_matcher_at_most_0.6s": all(r["seconds"] <= 0.6 for r in orb_default),
        "orb_configs_at_most_0.6s": meeting,
    }
    print(
        f"targets: pose-only <= 0.05 s: {targets['pose_only_at_most_0.05s']}; ORB ({OrbParams().matcher}, the "
        f"default) <= 0.6 s: {targets['orb_default_matcher_at_most_0.6s']}; ORB configs <= 0.6 s in both modes: "
        f"{', '.join(meeting) or 'none'}"
    )
    print("agreement with bruteforce over the 40 consecutive pairs (rows x_t, y_t, x_t1, y_t1):")
    for a in agreement:
        print(
            f"  {a['matcher']} ±{a['window']}: {a['pairs']} pairs vs {a['pairs_reference']}; "
            f"{a['share_of_reference_found']:.4f} of bruteforce's found, {a['share_in_reference']:.4f} of its own "
            f"are bruteforce's; identical on {a['identical_frame_pairs']}/{a['frame_pairs']} frame pairs"
        )

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(
        f"\nscenarios, pose-only, seeds {seeds.start}-{seeds.stop - 1}: ID switches summed over seeds, MOTA and "
        "IDF1 pooled, ms = tracking time per run (best of 3), mean over seeds"
    )
    scen = _scenario_rows(clip, seeds, None)
    _print_scenarios(scen)
    orb_seeds = range(args.first_seed, args.first_seed + max(1, args.seeds // 4))
    print(
        f"\nscenarios, ORB ({OrbParams().matcher} matcher), seeds {orb_seeds.start}-{orb_seeds.stop - 1}; ms = "
        "filtering + tracking, ORB excluded"
    )
    scen_orb = _scenario_rows(clip, orb_seeds, OrbCache(frames, OrbParams()))
    _print_scenarios(scen_orb)
    scen_windowed = {}
    for window in windows:
        print(f"\nscenarios, ORB (windowed ±{window}), seeds {orb_seeds.start}-{orb_seeds.stop - 1}")
        scen_windowed[str(window)] = _scenario_rows(
            clip, orb_seeds, OrbCache(frames, OrbParams(matcher="windowed", window=window))
        )
        _print_scenarios(scen_windowed[str(window)])

    result = {
        "benchmark": "poseflow",
        "clip": CLIP,
        "frames": clip.num_frames,
        "image_size": list(clip.image_size),
        "repeats": args.repeats,
        "decode_seconds": decode_s,
        "components": components,
        "speed": speed,
        "targets": targets,
        "agreement_with_bruteforce": agreement,
        "scenarios_pose_only": scen,
        "scenarios_orb": scen_orb,
        "scenarios_orb_windowed": scen_windowed,
        "alphapose_orb_seconds_reported": 60.0,
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "cv2_threads": cv2.getNumThreads(),
            "load_average_at_start": load,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
