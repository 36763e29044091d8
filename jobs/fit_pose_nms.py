"""Fit the parametric pose-NMS constants (δ1, μ, δ2, γ) to annotated data by coordinate descent on COCO keypoint AP.

    python -m jobs.fit_pose_nms --gt COCO_KEYPOINTS.json --candidates CANDIDATES.{json,parquet}
        [--out params.yaml] [--rounds 10] [--grid-size 5] [--span 4.0] [--init PARAMS.yaml]

RMPE (§3.3) learns the four parameters of its pose distance "by optimising two of them at a time while fixing the
other two, until convergence". This job does that: it alternates between the pairs (δ1, μ) and (δ2, γ), evaluating a
``G × G`` grid of each pair around its current value (multiplicative, from value/span to value·span) with the other
pair fixed, and moves to the best grid point when it raises the AP. A round without improvement halves the span
(in log scale); the fit stops when such a round happens at a span below 1.05 (converged) or after ``--rounds``.
The objective is the COCO keypoint AP (pycocotools ``COCOeval``, OKS sigmas of the GT's keypoint set) of
``models.pose_nms.pose_nms`` applied frame by frame to the candidates. All other constants stay at their
``--init`` values (default: AlphaPose's module constants in ``alphapose/utils/pPose_nms.py``). The AP before and
after is printed, and the fitted ``PoseNMSParams`` is written as YAML (``--out``; stdout without it) that
``PoseNMSParams.from_dict(yaml.safe_load(...))`` reads back.

Candidates file, one of:
  * JSON (``.json``): a list of COCO-results-like records, one per candidate pose:
    ``{"image_id": int, "bbox": [x, y, w, h], "score": float, "keypoints": [x1, y1, c1, ..., xK, yK, cK]}``
    where ``bbox`` is the detector box in pixels, ``score`` is the detector's box score (not a person score) and
    ``c`` are the SPPE's keypoint scores. Extra keys are ignored.
  * Parquet (``.parquet``): one row per candidate with columns ``image_id`` (int), ``box_xyxy`` (list of 4
    floats), ``box_score`` (float), ``keypoints`` (list of K [x, y] pairs, or 2K floats x1, y1, ...) and
    ``keypoint_scores`` (list of K floats).
``make_candidates`` builds such records from ground truth (jittered duplicates and background poses, seeded), and
``save_candidates`` writes either format.

Exit codes: 0 success; 2 unusable input (missing or malformed file, image ids absent from the ground truth,
keypoint counts that disagree, unwritable output, bad option).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # models/ (and torch) load when the job runs, not when it is imported
    from models.pose_nms import PoseNMSParams

__all__ = [
    "Frame",
    "FitResult",
    "InputError",
    "load_ground_truth",
    "load_candidates",
    "save_candidates",
    "make_candidates",
    "evaluate_ap",
    "fit_pose_nms",
    "main",
]

# The two pairs RMPE optimises alternately (paper §3.3).
FITTED_PAIRS = (("delta1", "mu"), ("delta2", "gamma"))
_MIN_SPAN = 1.05  # a no-improvement round below this grid span (±5 %) counts as converged
_PARQUET_COLUMNS = ("image_id", "box_xyxy", "box_score", "keypoints", "keypoint_scores")


class InputError(ValueError):
    """An input file or option this job cannot use; the message names the file."""


@dataclass(frozen=True)
class Frame:
    """One image's candidate poses, in the arrays ``pose_nms`` takes."""

    image_id: int
    boxes_xyxy: np.ndarray  # float64 [N, 4]
    box_scores: np.ndarray  # float64 [N]
    keypoints: np.ndarray  # float64 [N, K, 2]
    keypoint_scores: np.ndarray  # float64 [N, K]


@dataclass(frozen=True)
class FitResult:
    """Outcome of ``fit_pose_nms``: the best parameters and the AP with the initial and with them."""

    params: PoseNMSParams
    ap_before: float  # COCO keypoint AP (OKS .50:.95) with the initial parameters
    ap_after: float  # ... with ``params``
    rounds: int  # coordinate-descent rounds run
    evaluations: int  # distinct parameter sets evaluated
    converged: bool  # stopped by a round without improvement at the smallest span (not by --rounds)


# --------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------


def load_ground_truth(path: str | Path) -> tuple[object, int]:
    """Load a COCO keypoints annotation file. Returns the ``pycocotools.coco.COCO`` object and K."""
    from pycocotools.coco import COCO

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--gt {path}: file not found")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"--gt {path}: not a readable JSON file ({e})") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise InputError(f"--gt {path}: not a COCO annotation file (needs lists 'images', 'annotations', 'categories')")
    with_kps = [c for c in data["categories"] if isinstance(c, dict) and c.get("keypoints")]
    if not with_kps:
        raise InputError(f"--gt {path}: no category lists 'keypoints'; this is not a COCO keypoints file")
    if not any("keypoints" in a for a in data["annotations"]):
        raise InputError(f"--gt {path}: no annotation has 'keypoints'")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco, len(with_kps[0]["keypoints"])


def _frames_from_columns(path: Path, image_ids, boxes, box_scores, kps, scores) -> list[Frame]:
    n = len(image_ids)
    try:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(n, 4)
        box_scores = np.asarray(box_scores, dtype=np.float64).reshape(n)
        scores = np.asarray(scores, dtype=np.float64)
        k = scores.shape[1] if scores.ndim == 2 else -1
        kps = np.asarray(kps, dtype=np.float64).reshape(n, k, 2)
    except (ValueError, TypeError) as e:
        raise InputError(
            f"--candidates {path}: inconsistent candidate arrays ({e}); every candidate needs a box "
            "of 4 numbers and the same number K of keypoints, each with x, y and a score"
        ) from None
    for name, arr in (("boxes", boxes), ("box scores", box_scores), ("keypoints", kps), ("keypoint scores", scores)):
        if not np.isfinite(arr).all():
            raise InputError(f"--candidates {path}: {name} contain NaN or infinite values")
    if ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
        raise InputError(f"--candidates {path}: a box has negative width or height")
    ids = np.asarray(image_ids)
    frames = []
    for image_id in dict.fromkeys(ids.tolist()):  # first-appearance order
        rows = np.flatnonzero(ids == image_id)
        frames.append(Frame(int(image_id), boxes[rows], box_scores[rows], kps[rows], scores[rows]))
    return frames


def load_candidates(path: str | Path) -> list[Frame]:
    """Read a candidates file (JSON records or Parquet; see the module docstring), grouped by image."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--candidates {path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            records = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"--candidates {path}: not a readable JSON file ({e})") from None
        if not isinstance(records, list) or not records:
            raise InputError(f"--candidates {path}: expected a non-empty JSON list of candidate records")
        for j, rec in enumerate(records):
            missing = [
                key for key in ("image_id", "bbox", "score", "keypoints") if not isinstance(rec, dict) or key not in rec
            ]
            if missing:
                raise InputError(
                    f"--candidates {path}: record {j} lacks {', '.join(missing)}; each record needs "
                    "image_id, bbox [x, y, w, h], score (box score), keypoints [x, y, c]*K"
                )
            if len(rec["keypoints"]) % 3 or len(rec["bbox"]) != 4:
                raise InputError(
                    f"--candidates {path}: record {j} has {len(rec['bbox'])} bbox values and "
                    f"{len(rec['keypoints'])} keypoint values; expected 4 and a multiple of 3"
                )
        lengths = {len(rec["keypoints"]) for rec in records}
        if len(lengths) != 1:
            raise InputError(f"--candidates {path}: records have different keypoint counts {sorted(lengths)}")
        try:
            xywh = np.asarray([rec["bbox"] for rec in records], dtype=np.float64)
            flat = np.asarray([rec["keypoints"] for rec in records], dtype=np.float64).reshape(len(records), -1, 3)
            box_scores = [float(rec["score"]) for rec in records]
        except (ValueError, TypeError) as e:
            raise InputError(f"--candidates {path}: non-numeric values ({e})") from None
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        return _frames_from_columns(
            path, [rec["image_id"] for rec in records], boxes, box_scores, flat[..., :2], flat[..., 2]
        )
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as e:
            raise InputError(f"--candidates {path}: not a readable Parquet file ({e})") from None
        missing = [c for c in _PARQUET_COLUMNS if c not in table.column_names]
        if missing:
            raise InputError(
                f"--candidates {path}: missing column(s) {', '.join(missing)}; expected {', '.join(_PARQUET_COLUMNS)}"
            )
        if table.num_rows == 0:
            raise InputError(f"--candidates {path}: no rows")
        cols = {c: table.column(c).to_pylist() for c in _PARQUET_COLUMNS}
        return _frames_from_columns(
            path, cols["image_id"], cols["box_xyxy"], cols["box_score"], cols["keypoints"], cols["keypoint_scores"]
        )
    raise InputError(f"--candidates {path}: unknown format {suffix or '(no suffix)'!r}; use .json or .parquet")


def save_candidates(records: Sequence[dict], path: str | Path) -> None:
    """Write candidate records (the JSON format of the module docstring) as ``.json`` or ``.parquet``."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(list(records)))
        return
    if path.suffix.lower() != ".parquet":
        raise ValueError(f"{path}: unknown format {path.suffix!r}; use .json or .parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    def xyxy(bbox):
        x, y, w, h = bbox
        return [x, y, x + w, y + h]

    table = pa.table(
        {
            "image_id": pa.array([int(r["image_id"]) for r in records], pa.int64()),
            "box_xyxy": pa.array([xyxy(r["bbox"]) for r in records], pa.list_(pa.float64())),
            "box_score": pa.array([float(r["score"]) for r in records], pa.float64()),
            "keypoints": pa.array(
                [np.reshape(r["keypoints"], (-1, 3))[:, :2].tolist() for r in records], pa.list_(pa.list_(pa.float64()))
            ),
            "keypoint_scores": pa.array(
                [np.reshape(r["keypoints"], (-1, 3))[:, 2].tolist() for r in records], pa.list_(pa.float64())
            ),
        }
    )
    pq.write_table(table, path)


def make_candidates(
    coco_gt: dict, *, seed: int = 0, duplicates: int = 3, jitter: float = 0.03, background_per_image: int = 2
) -> list[dict]:
    """Synthetic SPPE output from ground truth: per person one accurate pose plus jittered duplicates.

    Args:
        coco_gt: a COCO keypoints annotation dict (``images``, ``annotations``).
        seed: seed of the only random generator used.
        duplicates: extra proposals per annotated person: the accurate pose moved by a random shift plus
            per-keypoint noise, both of σ = 0.25–1.5 × ``jitter`` × the person's box size (some merge under
            AlphaPose's constants, some do not), with scores 0.8–1.05 × the accurate pose's (so they can outrank it).
        jitter: relative noise scale of the duplicates.
        background_per_image: poses scattered at random inside each image, with low scores (false positives).
    Returns:
        Candidate records in the JSON format of the module docstring (``score`` is a box score).
    Persons with no labelled keypoint, and crowd regions, get no candidates.
    """
    rng = np.random.default_rng(seed)
    kps_names = next(c["keypoints"] for c in coco_gt["categories"] if c.get("keypoints"))
    k = len(kps_names)
    records: list[dict] = []

    def record(image_id, kp, c, box_xyxy, box_score):
        x1, y1, x2, y2 = (float(v) for v in box_xyxy)
        flat = np.concatenate([kp, c[:, None]], axis=1).ravel()
        return {
            "image_id": int(image_id),
            "bbox": [x1, y1, max(x2, x1) - x1, max(y2, y1) - y1],
            "score": float(box_score),
            "keypoints": [float(v) for v in flat],
        }

    for ann in coco_gt["annotations"]:
        if ann.get("iscrowd") or not ann.get("num_keypoints"):
            continue
        x, y, w, h = ann["bbox"]
        size = max(w, h, 1.0)
        gt = np.asarray(ann["keypoints"], dtype=np.float64).reshape(k, 3)
        labelled = gt[:, 2] > 0
        # Unlabelled keypoints get a guess inside the box and a low score, as an SPPE would give them.
        true = np.where(
            labelled[:, None], gt[:, :2], np.stack([x + rng.uniform(0, w, k), y + rng.uniform(0, h, k)], axis=1)
        )
        true_c = np.where(labelled, rng.uniform(0.6, 0.95, k), rng.uniform(0.05, 0.25, k))
        box = np.array([x, y, x + w, y + h])
        records.append(
            record(
                ann["image_id"],
                true + rng.normal(0, 0.01 * size, (k, 2)),
                true_c,
                box + rng.normal(0, 0.02 * size, 4),
                rng.uniform(0.8, 1.0),
            )
        )
        for _ in range(duplicates):
            sigma = jitter * size * rng.uniform(0.25, 1.5)
            kp = true + rng.normal(0, sigma, (k, 2)) + rng.normal(0, sigma, 2)
            # Scores like the accurate pose's: a duplicate may outrank it, which is what costs AP without NMS.
            c = np.clip(true_c * rng.uniform(0.8, 1.05, k), 0.0, 1.0)
            records.append(record(ann["image_id"], kp, c, box + rng.normal(0, 0.05 * size, 4), rng.uniform(0.7, 1.0)))
    for image in coco_gt["images"]:
        width, height = float(image.get("width", 640)), float(image.get("height", 480))
        for _ in range(background_per_image):
            bw, bh = rng.uniform(0.1, 0.3) * width, rng.uniform(0.2, 0.5) * height
            bx, by = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
            kp = np.stack([bx + rng.uniform(0, bw, k), by + rng.uniform(0, bh, k)], axis=1)
            records.append(
                record(image["id"], kp, rng.uniform(0.1, 0.5, k), [bx, by, bx + bw, by + bh], rng.uniform(0.1, 0.5))
            )
    return records


# --------------------------------------------------------------------------------------------------------------
# Objective and coordinate descent
# --------------------------------------------------------------------------------------------------------------


def evaluate_ap(coco, frames: Sequence[Frame], params) -> float:
    """COCO keypoint AP (OKS 0.50:0.95, pycocotools) of ``pose_nms(..., params)`` on every frame.

    The OKS sigmas are those of the ground truth's keypoint set (``models.keypoints``, by K). No detection at all
    scores 0.
    """
    from pycocotools.cocoeval import COCOeval

    from models.keypoints import keypoint_set_for_num_joints
    from models.pose_nms import pose_nms

    category = next(c for c in coco.dataset["categories"] if c.get("keypoints"))
    results = []
    for frame in frames:
        r = pose_nms(frame.boxes_xyxy, frame.box_scores, frame.keypoints, frame.keypoint_scores, params)
        flat = np.concatenate([r.keypoints, r.keypoint_scores[..., None]], axis=2).reshape(len(r), -1)
        for j in range(len(r)):
            results.append(
                {
                    "image_id": frame.image_id,
                    "category_id": category["id"],
                    "keypoints": flat[j].tolist(),
                    "score": float(r.pose_scores[j]),
                }
            )
    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # loadRes and summarize print tables
        detections = coco.loadRes(results)
        ev = COCOeval(coco, detections, "keypoints")
        ev.params.kpt_oks_sigmas = keypoint_set_for_num_joints(len(category["keypoints"])).sigmas_array()
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return max(0.0, float(ev.stats[0]))  # -1 means "no ground truth", which validation excludes


def _grid(value: float, span: float, size: int) -> list[float]:
    """``size`` values from value/span to value·span, evenly spaced in log scale (value itself when size is odd)."""
    return [value * span**e for e in np.linspace(-1.0, 1.0, size).tolist()]


def fit_pose_nms(
    coco,
    frames: Sequence[Frame],
    init,
    *,
    rounds: int = 10,
    grid_size: int = 5,
    span: float = 4.0,
    log: Callable[[str], None] = print,
) -> FitResult:
    """Coordinate descent on (δ1, μ) and (δ2, γ) maximising ``evaluate_ap`` (see the module docstring).

    Deterministic: grids are visited in a fixed order and a move needs a strictly higher AP (ties keep the
    current value, then the first grid point).
    """
    cache: dict[tuple[float, ...], float] = {}

    def ap_of(p) -> float:
        key = (p.delta1, p.mu, p.delta2, p.gamma)
        if key not in cache:
            cache[key] = evaluate_ap(coco, frames, p)
        return cache[key]

    best, best_ap = init, ap_of(init)
    ap_before = best_ap
    converged = False
    done = 0
    for done in range(1, rounds + 1):
        improved = False
        for a, b in FITTED_PAIRS:
            choice, choice_ap = best, best_ap
            for va in _grid(getattr(best, a), span, grid_size):
                for vb in _grid(getattr(best, b), span, grid_size):
                    candidate = dataclasses.replace(best, **{a: va, b: vb})
                    ap = ap_of(candidate)
                    if ap > choice_ap:
                        choice, choice_ap = candidate, ap
            if choice is not best:
                best, best_ap, improved = choice, choice_ap, True
        log(
            f"round {done}: AP {best_ap:.4f}  delta1={best.delta1:.4g} mu={best.mu:.4g} "
            f"delta2={best.delta2:.4g} gamma={best.gamma:.4g}  (grid span ×{span:.3g}, {len(cache)} evaluations)"
        )
        if not improved:
            if span <= _MIN_SPAN:
                converged = True
                break
            span = math.sqrt(span)  # refine around the current optimum
    return FitResult(
        params=best, ap_before=ap_before, ap_after=best_ap, rounds=done, evaluations=len(cache), converged=converged
    )


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------


def _load_init(path: Path | None):
    from models.pose_nms import BODY_PARAMS, PoseNMSParams

    if path is None:
        return BODY_PARAMS
    import yaml

    if not path.is_file():
        raise InputError(f"--init {path}: file not found")
    try:
        values = yaml.safe_load(path.read_text())
        params = PoseNMSParams.from_dict(values)
    except (OSError, yaml.YAMLError, TypeError, ValueError) as e:
        raise InputError(f"--init {path}: not a PoseNMSParams YAML mapping ({e})") from None
    if params.method != "parametric":
        raise InputError(f"--init {path}: method is {params.method!r}; only 'parametric' has δ1, μ, δ2, γ to fit")
    return params


def _check_output(path: Path | None) -> None:
    if path is None:
        return
    if path.is_dir():
        raise InputError(f"--out {path}: is a directory; give a file name such as {path / 'pose_nms.yaml'}")
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"--out {path}: directory {parent} does not exist")
    if not os.access(path if path.exists() else parent, os.W_OK):
        raise InputError(f"--out {path}: not writable")


def _to_yaml(result: FitResult, gt: Path, candidates: Path, frames: Sequence[Frame]) -> str:
    import yaml

    header = (
        "# Pose NMS parameters fitted by python -m jobs.fit_pose_nms (load with PoseNMSParams.from_dict)\n"
        f"# ground truth: {gt}\n# candidates: {candidates} ({sum(len(f.box_scores) for f in frames)} poses, "
        f"{len(frames)} images)\n"
        f"# COCO keypoint AP before: {result.ap_before:.6f}, after: {result.ap_after:.6f}; rounds: {result.rounds}, "
        f"evaluations: {result.evaluations}, converged: {result.converged}\n"
    )
    return header + yaml.safe_dump(result.params.to_dict(), sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.fit_pose_nms", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gt", type=Path, required=True, help="COCO keypoints annotation JSON")
    parser.add_argument(
        "--candidates",
        type=Path,
        required=True,
        help="candidate poses: JSON records or Parquet (see the module docstring)",
    )
    parser.add_argument("--out", type=Path, default=None, help="YAML file for the fitted parameters (default: stdout)")
    parser.add_argument("--rounds", type=int, default=10, help="maximum coordinate-descent rounds (default 10)")
    parser.add_argument("--grid-size", type=int, default=5, help="grid points per parameter (default 5)")
    parser.add_argument(
        "--span", type=float, default=4.0, help="initial grid span: value/span .. value·span (default 4.0)"
    )
    parser.add_argument(
        "--init", type=Path, default=None, help="PoseNMSParams YAML to start from (default: AlphaPose's constants)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.grid_size < 2:
        parser.error("--grid-size must be >= 2")
    if not args.span > 1.0:
        parser.error("--span must be > 1")

    try:
        from models.keypoints import keypoint_set_for_num_joints

        coco, k = load_ground_truth(args.gt)
        try:
            keypoint_set_for_num_joints(k)
        except ValueError as e:
            raise InputError(f"--gt {args.gt}: no OKS sigmas for its {k} keypoints ({e})") from None
        frames = load_candidates(args.candidates)
        k_candidates = frames[0].keypoint_scores.shape[1]
        if k_candidates != k:
            raise InputError(
                f"--candidates {args.candidates}: {k_candidates} keypoints per candidate, but --gt {args.gt} has {k}"
            )
        unknown = sorted({f.image_id for f in frames} - set(coco.getImgIds()))
        if unknown:
            raise InputError(
                f"--candidates {args.candidates}: image_id(s) {unknown[:10]} are not images of --gt {args.gt}"
            )
        if not coco.getAnnIds():
            raise InputError(f"--gt {args.gt}: no annotations to evaluate against")
        init = _load_init(args.init)
        _check_output(args.out)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    print(
        f"fitting delta1, mu, delta2, gamma on {len(frames)} images, "
        f"{sum(len(f.box_scores) for f in frames)} candidate poses ({k} keypoints)"
    )
    result = fit_pose_nms(coco, frames, init, rounds=args.rounds, grid_size=args.grid_size, span=args.span)
    text = _to_yaml(result, args.gt, args.candidates, frames)
    print(
        f"AP before: {result.ap_before:.4f}  (delta1={init.delta1:.4g} mu={init.mu:.4g} "
        f"delta2={init.delta2:.4g} gamma={init.gamma:.4g})"
    )
    p = result.params
    print(
        f"AP after:  {result.ap_after:.4f}  (delta1={p.delta1:.4g} mu={p.mu:.4g} delta2={p.delta2:.4g} "
        f"gamma={p.gamma:.4g}; {result.rounds} rounds, {result.evaluations} evaluations, "
        f"{'converged' if result.converged else 'stopped at --rounds'})"
    )
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
