"""Accuracy with real weights on the real annotated data beside the project, through the whole Ray pipeline.

    python -m benchmarks.accuracy [--data ../shared/data] [--only NAME ...] [--set KEY=VALUE ...]
                                  [--out benchmarks/results/accuracy.json]

Every row is ``jobs.label`` (local Ray, CPU) followed by ``jobs.evaluate`` on one data set, exactly as a user runs
them; nothing is measured on a side path. Weights come from ``make weights`` (BlazePose: Apache-2.0; YOLO11n-pose:
AGPL-3.0, Ultralytics). The data (``../shared/data``) is not redistributable and never copied into the project.

Rows (``SCENARIOS``):

* ``coco_det_blazepose``: the 4 COCO images, the real detections of ``test_coco_det_AP_H_56.json`` (score > 0.3:
  22–37 overlapping boxes per image), BlazePose SPPE with flip test, OKS pose NMS → COCO keypoint AP.
  ``coco_det_blazepose_parametric``: the same with the pipeline's defaults (AlphaPose's parametric pose NMS, no
  flip). The parametric NMS constants were fitted to AlphaPose's heatmap scores; on these dense boxes with
  BlazePose's sigmoid visibilities it keeps worse duplicates (the closing note of issue 11 has the 2×2 table).
* ``coco_yolo_blazepose``: YOLO11n person boxes + BlazePose → COCO AP.
* ``coco_yolo_pose``: YOLO11n-pose's own keypoints (``sppe.arch=detector``) → COCO AP.
* ``crowdpose_det_blazepose`` / ``crowdpose_yolo_blazepose``: the CrowdPose images, BlazePose mapped to Halpe-26
  (head top and neck approximated, ``models.blazepose``) and converted to CrowdPose-14 → CrowdPose AP.
* ``bonn_yolo_blazepose_{released,improved}``: the Bonn clip (mp4, 41 frames, 4 people), YOLO boxes + BlazePose,
  PoseFlow released vs improved → PCKh@0.5 on the 12 limb joints COCO-17 shares with its CrowdPose-14 annotations,
  and MOTA / IDF1 / ID switches of the tracks (OKS ≥ 0.5 on those joints).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import write_result

__all__ = ["Scenario", "SCENARIOS", "run_scenario", "main"]

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Scenario:
    name: str
    media: str  # relative to the data folder
    gt: str
    kinds: tuple[str, ...]  # jobs.evaluate kinds
    overrides: tuple[str, ...]  # jobs.label --set values ({data} and {weights} are filled in)


_YOLO = ("detector.arch=yolo", "detector.weights={weights}/yolo11n-pose.pt")
_BLAZE = ("sppe.arch=blazepose_full",)
_HALPE = ("sppe.keypoint_set=halpe26", "sppe.num_joints=26")
_COCO_DETS = (
    "detector.arch=precomputed",
    "detector.weights={data}/coco/test_coco_det_AP_H_56.json",
    "detector.score_threshold=0.3",
)

SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "coco_det_blazepose",
            "coco",
            "coco/test_coco.json",
            ("coco",),
            _COCO_DETS + _BLAZE + ("pose_nms.method=oks", "sppe.flip_test=true"),
        ),
        Scenario("coco_det_blazepose_parametric", "coco", "coco/test_coco.json", ("coco",), _COCO_DETS + _BLAZE),
        Scenario("coco_yolo_blazepose", "coco", "coco/test_coco.json", ("coco",), _YOLO + _BLAZE),
        Scenario("coco_yolo_pose", "coco", "coco/test_coco.json", ("coco",), _YOLO + ("sppe.arch=detector",)),
        Scenario(
            "crowdpose_det_blazepose",
            "crowdpose",
            "crowdpose/test_crowdpose.json",
            ("crowdpose",),
            (
                "detector.arch=precomputed",
                "detector.weights={data}/crowdpose/test_crowdpose_det_AP_40.json",
                "detector.score_threshold=0.3",
            )
            + _BLAZE
            + _HALPE,
        ),
        Scenario(
            "crowdpose_yolo_blazepose",
            "crowdpose",
            "crowdpose/test_crowdpose.json",
            ("crowdpose",),
            _YOLO + _BLAZE + _HALPE,
        ),
        Scenario(
            "bonn_yolo_blazepose_released",
            "bonn_posetrack/060470979.mp4",
            "bonn_posetrack/060470979.json",
            ("pckh", "track"),
            _YOLO + _BLAZE + ("tracking.poseflow.mode=released",),
        ),
        Scenario(
            "bonn_yolo_blazepose_improved",
            "bonn_posetrack/060470979.mp4",
            "bonn_posetrack/060470979.json",
            ("pckh", "track"),
            _YOLO + _BLAZE + ("tracking.poseflow.mode=improved",),
        ),
    )
}


def run_scenario(s: Scenario, data: Path, work: Path, weights: str | None = None, extra: tuple[str, ...] = ()) -> dict:
    """Label ``s.media`` into a fresh folder under ``work`` and evaluate it; returns ``{"name", "seconds", kind:
    report}`` (reports as jobs.evaluate writes them). ``extra``: more ``--set`` values. Raises ``RuntimeError`` if a
    job exits non-zero."""
    from jobs.evaluate import main as evaluate
    from jobs.label import main as label
    from models.zoo import default_weights_dir

    weights = weights or default_weights_dir()
    out = work / s.name
    shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resumed one
    sets = [o.format(data=data, weights=weights) for o in s.overrides] + list(extra)
    argv = ["--input", str(data / s.media), "--output", str(out), "--run-id", s.name]
    for o in sets:
        argv += ["--set", o]
    t0 = time.perf_counter()
    if label(argv) != 0:
        raise RuntimeError(f"jobs.label failed for {s.name}: {' '.join(argv)}")
    seconds = time.perf_counter() - t0
    result: dict = {"name": s.name, "seconds": seconds, "overrides": sets}
    for kind in s.kinds:
        report = work / f"{s.name}.{kind}.json"
        if evaluate(["--output", str(out), "--gt", str(data / s.gt), "--kind", kind, "--out", str(report)]) != 0:
            raise RuntimeError(f"jobs.evaluate --kind {kind} failed for {s.name}")
        result[kind] = json.loads(report.read_text())
    return result


def headline(r: dict) -> dict:
    """The numbers of one result that the table shows."""
    out = {}
    for kind in ("coco", "crowdpose"):
        if kind in r:
            out["AP"] = r[kind]["stats"]["AP"]
            out["AP50"] = r[kind]["stats"]["AP50"]
    if "pckh" in r:
        out["PCKh"] = r["pckh"]["pckh"]["PCKh"]
    if "track" in r:
        t = r["track"]["tracking"]["overall"]
        out.update(MOTA=t["MOTA"], IDF1=t["IDF1"], IDSW=t["IDSW"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS))
    parser.add_argument("--work", default=str(REPO / "out" / "accuracy"))
    parser.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra jobs.label override for every scenario (repeatable)",
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "accuracy.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    rows = []
    try:
        for name in args.only or list(SCENARIOS):
            r = run_scenario(SCENARIOS[name], Path(args.data), Path(args.work), extra=tuple(args.extra))
            r["headline"] = headline(r)
            rows.append(r)
    finally:
        ray.shutdown()
    print(f"\n{'scenario':<32} {'AP':>6} {'AP50':>6} {'PCKh':>6} {'MOTA':>6} {'IDF1':>6} {'IDSW':>5} {'s':>6}")
    for r in rows:
        h = r["headline"]
        cell = lambda k: f"{h[k]:6.3f}" if k in h else f"{'':6}"  # noqa: E731
        print(
            f"{r['name']:<32} {cell('AP')} {cell('AP50')} {cell('PCKh')} {cell('MOTA')} {cell('IDF1')} "
            f"{h.get('IDSW', ''):>5} {r['seconds']:6.1f}"
        )
    write_result(
        {
            "extra_overrides": args.extra,
            "rows": [
                {"name": r["name"], "overrides": r["overrides"], "seconds": r["seconds"], **r["headline"]} for r in rows
            ],
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
