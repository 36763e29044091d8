"""Decode → detection → SPPE → pose NMS in ONE process on one GPU (fp16, crops cut on the GPU): frames/s, persons/s.

    python -m benchmarks.gpu                      # on a GPU machine (a few minutes; never more than about 8)
    python -m benchmarks.gpu --sppe blazepose_full fastpose_res50 --batch 32 --passes 5 --warmup 1 \
                             --coco-repeat 64 --bonn-repeat 8 --cpu-frames 32 --max-seconds 360 \
                             --out benchmarks/results/gpu.json
    python -m benchmarks.gpu --ci                 # CI size on the CPU (a few frames, one timed pass; it cannot rot)

**Running it on a GPU machine.** From the repository root after ``make weights`` (``weights/yolo11n-pose.pt`` and
``weights/pose_landmark_full.pt``, or ``$RAYPOSE_WEIGHTS_DIR``) with ``../shared/data`` beside the clone and a CUDA
build of torch: ``.venv/bin/python -m benchmarks.gpu``. ``--device auto`` (the default) takes ``cuda`` when
``torch.cuda.is_available()`` (``--device cuda:1`` picks a GPU). No Ray: the actors' callables are chained directly,
exactly as the pipeline's stages call them, so what is measured is the per-GPU work without scheduling. Budget:
``--max-seconds`` (360 s) bounds the warm-up and timed work; once it is spent, the remaining GPU rows run their
warm-up and one timed pass and the remaining CPU reference rows are skipped (``budget_exhausted`` in the JSON), so
with set-up (imports, probing, weights, CUDA context: well under a minute) the run fits in 8 minutes.

**What runs.** Per batch of ``--batch`` frames (one detector call): ``actors.detect.Detector`` (``arch=yolo``,
YOLO11n-pose real weights, ``precision=fp16`` on CUDA, ``crop_backend="torch"``: each frame is uploaded and the
SPPE crops are cut by ``grid_sample`` on the GPU), then ``actors.sppe.SPPE`` (``blazepose_full``, MediaPipe's real
weights, fp16 on CUDA; all persons of the batch pooled, 64 per forward unless ``--sppe-batch``), then
``actors.pose_nms.apply_pose_nms`` (AlphaPose's parametric pose NMS, NumPy on the CPU, as in the pipeline). The
optional ``fastpose_res50`` rows (default on a GPU, ``--sppe``) run AlphaPose's FastPose-res50 with **RANDOM
weights** (seeded; 256×192 crops): only its speed means anything, which is what AlphaPose users compare; its pose
NMS sees random keypoints. Precision: fp16 on CUDA for both networks; on the CPU bf16 if
``torch.ops.mkldnn._is_mkldnn_bf16_supported()``, else fp32 (``--precision`` overrides).

**Densities.** ``coco``: the four COCO val2017 images of ``../shared/data/coco`` (500-640 px wide, 1-5 persons
each, YOLO11n finds 3 per image on average), decoded from JPEG each pass (``pipelines.decode``, an image unit), the list
repeated ``--coco-repeat`` times. ``bonn``: ``../shared/data/bonn_posetrack/060470979.mp4`` (960×540 H.264, 41
frames, 4-6 people), probed once and decoded (``pipelines.decode.decode_shard``, PyAV, one codec thread as in the
pipeline's decode tasks) ``--bonn-repeat`` times each pass.

**Steady state.** Per row (device × density × SPPE arch): ``--warmup`` untimed passes (CUDA context, kernel
loading, the caching allocator), then up to ``--passes`` timed passes over the whole workload. The row reports the
pass with the median total time (its stage split is that pass's, so the stages add up to its total).

**Numbers (one row; "per GPU": one process drives one device).**

* ``frames``, ``persons``: frames per pass; persons the detector found and the SPPE estimated (crops) per pass;
  ``persons_kept`` survived pose NMS.
* ``frames_per_s`` = frames / total seconds of the pass, decode included (serial: no stage overlaps another);
  ``persons_per_s`` = persons / the same seconds. ``frames_per_s_no_decode`` divides by the total minus decode:
  what the GPU stages sustain when decode runs elsewhere (the Ray pipeline decodes in separate CPU tasks).
* ``stage_s``: seconds of the median pass per stage: ``decode`` (demux + decode + RGB conversion, or JPEG decode),
  ``detect`` (``Detector.__call__``: letterbox on the CPU, upload, network, decode + NMS, mapping back, the GPU
  crops and their copy back to host memory), ``sppe`` (``SPPE.__call__``: pooling, upload, network, keypoint
  decoding, copy back), ``pose_nms``, and ``other`` (batch assembly and the loop: total minus the four). On CUDA each
  stage is bracketed by ``torch.cuda.synchronize()``.
* ``gpu``: ``nvidia-smi --query-gpu=utilization.gpu,memory.used`` sampled every 0.2 s during the timed passes
  (mean and max utilisation in %, max memory used in MiB, sample count); ``"n/a"`` without nvidia-smi or on the
  CPU. ``cuda_max_allocated_mib``: ``torch.cuda.max_memory_allocated`` over the row.
* Table columns: ``frames/s``, ``persons/s``, ``fps-dec`` (``frames_per_s_no_decode``), the five stage seconds,
  ``gpu%`` (mean/max utilisation) and ``MiB`` (max memory used, nvidia-smi).
* CPU numbers: on a GPU run, ``cpu_reference`` rows run the same chain on the same machine's CPU over about
  ``--cpu-frames`` frames per density (the CPU's default precision, OpenCV crops, all cores; ``--cpu-frames 0``
  skips them). The whole Ray job on a CPU (Bonn ×10, FastPose-res50) is ``benchmarks/end_to_end.py``.

``--ci`` is ``--device cpu``, the 4 COCO images and the first 4 Bonn frames, batch 4, no warm-up and one timed pass,
BlazePose only, no CPU reference (about 15 s on 2 idle cores): it checks that the script runs, not how fast.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from actors.detect import Detector, DetectorConfig
from actors.pose_nms import apply_pose_nms
from actors.sppe import SPPE, SPPEConfig
from benchmarks import write_result
from models.pose_nms import PoseNMSParams
from pipelines.decode import decode_shard, plan_shards, probe_video
from store.sources import WorkUnit

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
BONN_CLIP = "bonn_posetrack/060470979.mp4"
STAGES = ("decode", "detect", "sppe", "pose_nms")
SPPE_WEIGHTS = {"blazepose_full": "real (MediaPipe pose_landmark_full, Apache-2.0)", "fastpose_res50": "RANDOM"}


# ------------------------------------------------------------------------------------------------ workloads


@dataclass(frozen=True)
class Workload:
    """One density: ``decode(chunk)`` decodes a whole pass (uint8 RGB frame batches, ``pipelines.decode``)."""

    name: str
    source: str
    frames: int
    decode: Callable[[int], Iterator[dict[str, np.ndarray]]]


def coco_workload(data: Path, repeat: int) -> Workload:
    """The COCO val images (JPEG decoded every pass), the list repeated ``repeat`` times as one image unit."""
    files = sorted((data / "coco").glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"no COCO images under {data / 'coco'} (../shared/data beside the clone)")
    unit = WorkUnit(
        video_id="coco",
        source_uri=str(data / "coco"),
        kind="images",
        fingerprint="",
        frames=tuple(map(str, files)) * repeat,
    )
    (shard,) = plan_shards(unit, shard_frames=len(unit.frames))

    def decode(chunk: int) -> Iterator[dict[str, np.ndarray]]:
        yield from decode_shard(shard, chunk=chunk)

    return Workload("coco", f"{len(files)} COCO val2017 images ×{repeat}", len(unit.frames), decode)


def bonn_workload(data: Path, repeat: int, first: int | None = None) -> Workload:
    """The Bonn clip's first ``first`` frames (all 41 by default), probed once, decoded ``repeat`` times a pass."""
    path = data / BONN_CLIP
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing (../shared/data beside the clone)")
    probe = probe_video(str(path))
    n = min(first or probe.num_frames, probe.num_frames)
    unit = WorkUnit(video_id="bonn", source_uri=str(path), kind="video", fingerprint="")
    shard = plan_shards(unit, shard_frames=n, probe=probe)[0]

    def decode(chunk: int) -> Iterator[dict[str, np.ndarray]]:
        for _ in range(repeat):
            yield from decode_shard(shard, chunk=chunk)

    return Workload(
        "bonn", f"{BONN_CLIP} ({probe.width}x{probe.height}) first {n} frames ×{repeat}", n * repeat, decode
    )


# ------------------------------------------------------------------------------------------------ GPU sampling


class GpuSampler:
    """``nvidia-smi`` every ``interval`` s in a thread: utilisation (%) and memory used (MiB) of one GPU."""

    def __init__(self, device: torch.device, interval: float = 0.2) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        index = device.index if device.index is not None else torch.cuda.current_device()
        visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        self.gpu_id = visible[index].strip() if index < len(visible) else str(index)  # nvidia-smi's numbering
        self.cmd = [
            shutil.which("nvidia-smi") or "nvidia-smi",
            f"--id={self.gpu_id}",
            "--query-gpu=utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
        ]

    @staticmethod
    def available(device: torch.device) -> bool:
        return device.type == "cuda" and shutil.which("nvidia-smi") is not None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                line = subprocess.run(self.cmd, capture_output=True, text=True, timeout=5).stdout.strip().splitlines()
                util, mem = (float(v) for v in line[0].split(","))
                self.samples.append((util, mem))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass  # a missed sample; the count in the result says how many were taken
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuSampler:
        self._thread = threading.Thread(target=self._run, name="nvidia-smi-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> dict | str:
        if not self.samples:
            return "n/a"
        util = [u for u, _ in self.samples]
        return {
            "util_mean_pct": statistics.fmean(util),
            "util_max_pct": max(util),
            "mem_used_max_mib": max(m for _, m in self.samples),
            "samples": len(self.samples),
            "interval_s": self.interval,
        }


class _NoSampler:
    def __enter__(self) -> _NoSampler:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def summary(self) -> str:
        return "n/a"


# ------------------------------------------------------------------------------------------------ one pass


class Chain:
    """Detector → SPPE → pose NMS on one device, the actors' callables as the pipeline's stages call them."""

    def __init__(
        self, arch: str, device: str, precision: str, crop_backend: str, sppe_batch: int, weights: dict[str, str]
    ) -> None:
        self.device = torch.device(device)
        self.arch = arch
        sppe_cfg = SPPEConfig(
            arch=arch,
            checkpoint=weights.get(arch),
            random_weights=arch not in weights,
            device=device,
            precision=precision,
            batch_size=sppe_batch,
        )
        det_cfg = DetectorConfig(
            arch="yolo", weights=weights["yolo"], device=device, precision=precision, crop_backend=crop_backend
        )
        self.detector = Detector(det_cfg, crop=sppe_cfg.crop)
        self.sppe = SPPE(sppe_cfg)
        self.params = PoseNMSParams()
        self.precision = precision
        self.crop_backend = self.detector.crop_backend
        self.weights = SPPE_WEIGHTS.get(arch, "RANDOM" if sppe_cfg.random_weights else "real")

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run_pass(self, workload: Workload, batch: int) -> dict:
        """One pass over the workload: seconds per stage and in total, frames, persons."""
        secs = dict.fromkeys(STAGES, 0.0)
        counts = {"frames": 0, "persons": 0, "persons_kept": 0}
        pending: list[np.ndarray] = []

        def process(frames: list[np.ndarray]) -> None:
            if len({f.shape for f in frames}) == 1:
                column = np.stack(frames)
            else:  # differently sized images: an object column, as Ray Data hands them over
                column = np.empty(len(frames), dtype=object)
                column[:] = frames
            rows = {"frame": column, "frame_index": np.arange(len(frames), dtype=np.int64)}
            self.sync()
            t0 = time.perf_counter()
            det = self.detector(rows)
            self.sync()
            t1 = time.perf_counter()
            est = self.sppe(det)
            self.sync()
            t2 = time.perf_counter()
            out = apply_pose_nms(est, self.params)
            t3 = time.perf_counter()
            secs["detect"] += t1 - t0
            secs["sppe"] += t2 - t1
            secs["pose_nms"] += t3 - t2
            bad = [e for e in det["error"] if e]
            if bad:
                raise RuntimeError(f"detector reported an error on benchmark frames: {bad[0]}")
            counts["frames"] += len(frames)
            counts["persons"] += int(det["n_persons"].sum())
            counts["persons_kept"] += int(out["n_persons"].sum())

        self.sync()
        start = time.perf_counter()
        decoded = workload.decode(batch)
        while True:
            t0 = time.perf_counter()
            chunk = next(decoded, None)
            secs["decode"] += time.perf_counter() - t0
            if chunk is not None:
                errors = [e for e in chunk["error"] if e]
                if errors:
                    raise RuntimeError(f"{workload.name}: decode failed: {errors[0]}")
                pending.extend(chunk["frame"])
            while len(pending) >= batch or (chunk is None and pending):
                process(pending[:batch])
                del pending[:batch]
            if chunk is None:
                break
        self.sync()
        total = time.perf_counter() - start
        return {"total_s": total, "stage_s": {**secs, "other": max(total - sum(secs.values()), 0.0)}, **counts}


# ------------------------------------------------------------------------------------------------ rows


class Budget:
    """Seconds of timed work left; once spent, rows run their warm-up and one timed pass only."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds
        self.exhausted = False

    def left(self) -> bool:
        if time.perf_counter() >= self.deadline:
            self.exhausted = True
        return not self.exhausted


def bench_row(chain: Chain, workload: Workload, batch: int, warmup: int, passes: int, budget: Budget) -> dict:
    for _ in range(warmup):
        chain.run_pass(workload, batch)
    if chain.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(chain.device)
    sampler = GpuSampler(chain.device) if GpuSampler.available(chain.device) else _NoSampler()
    runs = []
    with sampler:
        while len(runs) < max(passes, 1) and (not runs or budget.left()):
            runs.append(chain.run_pass(workload, batch))
    ordered = sorted(runs, key=lambda r: r["total_s"])
    med = ordered[(len(ordered) - 1) // 2]  # the median pass (lower middle for an even count)
    total = med["total_s"]
    no_decode = total - med["stage_s"]["decode"]
    row = {
        "device": str(chain.device),
        "device_name": torch.cuda.get_device_name(chain.device) if chain.device.type == "cuda" else _cpu_name(),
        "density": workload.name,
        "workload": workload.source,
        "detector": "yolo (yolo11n-pose.pt, real, AGPL-3.0)",
        "sppe": chain.arch,
        "sppe_weights": chain.weights,
        "precision": chain.precision,
        "crop_backend": chain.crop_backend,
        "batch_frames": batch,
        "sppe_batch": chain.sppe.batch_size,
        "torch_threads": torch.get_num_threads(),
        "warmup_passes": warmup,
        "timed_passes": len(runs),
        "frames": med["frames"],
        "persons": med["persons"],
        "persons_kept": med["persons_kept"],
        "persons_per_frame": med["persons"] / max(med["frames"], 1),
        "total_s": total,
        "frames_per_s": med["frames"] / total,
        "persons_per_s": med["persons"] / total,
        "frames_per_s_no_decode": med["frames"] / no_decode if no_decode > 0 else None,
        "stage_s": med["stage_s"],
        "passes_total_s": [r["total_s"] for r in runs],
        "gpu": sampler.summary(),
        "cuda_max_allocated_mib": (
            torch.cuda.max_memory_allocated(chain.device) / 2**20 if chain.device.type == "cuda" else None
        ),
    }
    print(_format_row(row), flush=True)
    return row


_HEADER = (
    f"{'device':<7}{'density':<8}{'sppe':<24}{'prec':<5}{'frames':>7}{'persons':>8}{'frames/s':>10}"
    f"{'persons/s':>10}{'fps-dec':>9}  {'decode':>7}{'detect':>7}{'sppe':>7}{'nms':>7}{'other':>7}"
    f"  {'gpu%':>9}{'MiB':>7}"
)


def _format_row(r: dict) -> str:
    s = r["stage_s"]
    arch = r["sppe"] + (" (RANDOM)" if r["sppe_weights"] == "RANDOM" else "")
    gpu = r["gpu"]
    util = f"{gpu['util_mean_pct']:.0f}/{gpu['util_max_pct']:.0f}" if isinstance(gpu, dict) else "n/a"
    mem = f"{gpu['mem_used_max_mib']:.0f}" if isinstance(gpu, dict) else "n/a"
    no_dec = f"{r['frames_per_s_no_decode']:.1f}" if r["frames_per_s_no_decode"] else "-"
    return (
        f"{r['device'][:6]:<7}{r['density']:<8}{arch:<24}{r['precision']:<5}{r['frames']:>7}{r['persons']:>8}"
        f"{r['frames_per_s']:>10.2f}{r['persons_per_s']:>10.2f}{no_dec:>9}  "
        + "".join(f"{s[k]:>7.2f}" for k in (*STAGES, "other"))
        + f"  {util:>9}{mem:>7}"
    )


# ------------------------------------------------------------------------------------------------ main


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _default_precision(device: torch.device) -> str:
    if device.type == "cuda":
        return "fp16"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def _weights(archs: list[str]) -> dict[str, str]:
    from models.zoo import weights_file

    out = {"yolo": weights_file("yolo11n_pose")}
    if "blazepose_full" in archs:
        out["blazepose_full"] = weights_file("blazepose_full")
    return out


def _run_device(
    device: str,
    precision: str,
    crop_backend: str,
    archs: list[str],
    workloads: list[Workload],
    args: argparse.Namespace,
    weights: dict[str, str],
    budget: Budget,
    optional: bool = False,
) -> list[dict]:
    """Rows of every (arch, workload) on ``device``; ``optional`` rows (the CPU reference) stop once the budget is
    spent."""
    rows = []
    for arch in archs:
        if optional and not budget.left():
            break
        chain = Chain(arch, device, precision, crop_backend, args.sppe_batch, weights)
        for workload in workloads:
            if optional and not budget.left():
                break
            rows.append(bench_row(chain, workload, args.batch, args.warmup, args.passes, budget))
        del chain
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--ci", action="store_true", help="CI size on the CPU: a few frames, one timed pass")
    p.add_argument("--device", default="auto", help="'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:N'")
    p.add_argument("--precision", default="auto", help="'auto' (fp16 on CUDA; bf16/fp32 on CPU), fp32, bf16, fp16")
    p.add_argument("--crop-backend", default="torch", choices=["torch", "opencv", "auto"])
    p.add_argument(
        "--sppe",
        nargs="+",
        default=None,
        choices=["blazepose_full", "fastpose_res50"],
        help="pose networks (default: both on CUDA, blazepose_full on CPU); fastpose_res50 has RANDOM weights",
    )
    p.add_argument("--batch", type=int, default=32, help="frames per detector call")
    p.add_argument("--sppe-batch", type=int, default=0, help="persons per SPPE forward (0: 64 on GPU, 8 on CPU)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes per row")
    p.add_argument("--passes", type=int, default=5, help="timed passes per row (the median pass is reported)")
    p.add_argument("--coco-repeat", type=int, default=64, help="times the 4 COCO images are repeated per pass")
    p.add_argument("--bonn-repeat", type=int, default=8, help="times the Bonn clip is decoded per pass")
    p.add_argument("--bonn-frames", type=int, default=None, help="use the clip's first N frames (default: all 41)")
    p.add_argument("--cpu-frames", type=int, default=32, help="CPU reference frames per density on a GPU run (0: none)")
    p.add_argument(
        "--max-seconds", type=float, default=360.0, help="budget for warm-up and timed work (then 1 pass a row)"
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gpu.json"))
    args = p.parse_args(argv)
    if args.ci:
        args.device, args.batch, args.warmup, args.passes = "cpu", 4, 0, 1
        args.coco_repeat, args.bonn_repeat, args.bonn_frames, args.cpu_frames = 1, 1, 4, 0
        args.sppe = args.sppe or ["blazepose_full"]
    if args.batch < 1 or args.passes < 1 or args.warmup < 0:
        p.error("--batch and --passes must be ≥ 1, --warmup ≥ 0")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else None
    device = device or torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available (torch {torch.__version__})")
    precision = _default_precision(device) if args.precision == "auto" else args.precision
    archs = args.sppe or (["blazepose_full", "fastpose_res50"] if device.type == "cuda" else ["blazepose_full"])
    weights = _weights(archs)
    data = Path(args.data)
    workloads = [coco_workload(data, args.coco_repeat), bonn_workload(data, args.bonn_repeat, args.bonn_frames)]
    budget = Budget(args.max_seconds)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    print(
        f"# {name} ({device}), torch {torch.__version__}, {os.cpu_count()} CPUs ({torch.get_num_threads()} threads); "
        f"YOLO11n-pose + SPPE at {precision}, crops via {args.crop_backend}, {args.batch} frames per detector call",
        flush=True,
    )
    for w in workloads:
        print(f"# {w.name}: {w.source} = {w.frames} frames per pass", flush=True)
    print("# per row: the median of the timed passes; stage columns are seconds of that pass", flush=True)
    print(_HEADER, flush=True)
    t0 = time.perf_counter()
    rows = _run_device(str(device), precision, args.crop_backend, archs, workloads, args, weights, budget)

    cpu_rows: list[dict] | str = "this run is the CPU run" if device.type == "cpu" else "skipped (--cpu-frames 0)"
    if device.type == "cuda" and args.cpu_frames > 0:
        if budget.left():
            cpu = torch.device("cpu")
            cpu_workloads = [
                coco_workload(data, max(1, args.cpu_frames // 4)),
                bonn_workload(data, 1, min(args.cpu_frames, args.bonn_frames or args.cpu_frames)),
            ]
            print(f"# CPU reference, same machine, {torch.get_num_threads()} threads, OpenCV crops", flush=True)
            cpu_args = argparse.Namespace(**{**vars(args), "passes": 1, "warmup": 1})
            cpu_rows = _run_device(
                "cpu", _default_precision(cpu), "opencv", archs, cpu_workloads, cpu_args, weights, budget, True
            )
        else:
            cpu_rows = f"skipped: the --max-seconds {args.max_seconds:.0f} budget was spent"
    total = time.perf_counter() - t0
    print(f"# total {total:.0f} s; CPU numbers of the whole Ray job: python -m benchmarks.end_to_end", flush=True)
    result = {
        "benchmark": "gpu",
        "device": device.type,
        "device_name": name,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
        },
        "settings": {
            "ci": args.ci,
            "precision": precision,
            "crop_backend": args.crop_backend,
            "batch_frames": args.batch,
            "sppe_batch": args.sppe_batch,
            "warmup": args.warmup,
            "passes": args.passes,
            "statistic": "median pass (stage split of that pass)",
            "max_seconds": args.max_seconds,
        },
        "random_weights": "fastpose_res50 rows only (a speed measurement)" if "fastpose_res50" in archs else "none",
        "workloads": {w.name: {"source": w.source, "frames": w.frames} for w in workloads},
        "rows": rows,
        "cpu_reference": cpu_rows,
        "cpu_reference_elsewhere": "benchmarks/end_to_end.py (the whole jobs.label process on CPU)",
        "budget_exhausted": budget.exhausted,
        "total_seconds": total,
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
