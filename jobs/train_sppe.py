"""Train an SPPE on pre-generated proposal samples with Ray Train (DDP), resumable, exporting AlphaPose checkpoints.

    python -m jobs.train_sppe --proposals DIR --out DIR --name RUN [--arch fastpose_res18] [--epochs 3]
                              [--batch-size 32] [--lr 1e-3] [--workers 1] [--cpus-per-worker 0.5] [--gpu]
                              [--seed 0] [--sstn] [--parallel-sppe CKPT] [--bf16] [--dpg-from-epoch E]
                              [--val-gt JSON --val-images DIR] [--storage DIR_OR_URI] [--threads N]
                              [--shuffle-buffer ROWS]

AlphaPose's SPPE training (``scripts/train.py``; samples as ``alphapose/utils/presets/simple_transform.py`` makes
them; RMPE, Fang et al., "RMPE: Regional Multi-person Pose Estimation", ICCV 2017) on Ray:

* **Data**: the proposal shards of ``jobs.proposals`` (``<proposals>/samples/shard=*/part-0.parquet``,
  ``store.training.SAMPLE_SCHEMA``), streamed through Ray Data (crop decode + Gaussian targets at stride 4,
  ``pipelines.train``) and split across the workers (``DataConfig(datasets_to_split=["train", "train_dpg"])``).
  ``--dpg-from-epoch E``: epochs before E use the ``branch == "gt"`` rows (AlphaPose's plain-box phase), epochs from
  E the DPG/PGPG rows, with the learning rate reset there as AlphaPose does at its DPG milestone (AlphaPose
  ``scripts/train.py``, ``DPG_MILESTONE``).
* **Step**: ``models.train`` (0.5·MSE with target weights, Adam, per-epoch MultiStepLR [90, 120] ×0.1), optional
  ``--sstn`` (RMPE's STN/SDTN around the SPPE, loss in the proposal frame) and ``--parallel-sppe CKPT`` (a frozen
  second SPPE against centre-located targets), optional ``--bf16`` autocast (CUDA on GPU workers; allowed on CPU).
* **Workers**: ``--workers`` × ``--cpus-per-worker`` (gloo on CPU); ``--gpu`` gives each worker a GPU (nccl).
  Keep ``workers × cpus_per_worker`` below the cluster's CPUs: Ray Data needs CPUs of its own, else the run hangs
  (Train reserves its workers' CPUs first); the job refuses a local request that leaves Ray Data no CPU.
* **Checkpoints**: every epoch rank 0 reports a Ray Train checkpoint (``state.pt``: full model incl. SSTN, optimizer,
  epoch, RNG) under ``--storage`` (default ``<out>/ray_train``) / ``--name``, and exports
  ``<out>/sppe_epoch_<e>.pth`` (and ``final.pth`` after the last epoch): a plain state dict of
  ``models.sppe.build_sppe(arch)`` in AlphaPose's layout, without STN or parallel branch, which
  ``models.checkpoints.load_checkpoint`` (and so ``jobs.label``'s ``sppe.checkpoint``) loads strictly.
* **Resume**: rerun the same command (same ``--name`` and ``--storage``) after a kill: training continues from the
  last registered checkpoint (notes §3.2; a kill within ~2 s of an epoch's end may repeat that epoch). A finished
  run's rerun trains nothing; a new experiment needs a new ``--name``.
* **Metrics**: per epoch ``loss``, ``samples``, ``samples_per_s``, ``lr`` (and COCO keypoint ``val_AP`` … with
  ``--val-gt``/``--val-images``: GT boxes through the inference crop, ``models.heatmaps`` decode and back-projection,
  pycocotools OKS AP as ``jobs.evaluate``) go to ``ray.train.report``, to ``<out>/metrics/epoch_<e>.json`` and, at
  the end, to ``<out>/metrics.parquet`` and ``<out>/summary.json``.

Everything is checked before Ray starts (exit 2 with the reason): shards present and consistent, arch known, crop
size usable, checkpoint loadable strictly, validation files readable, output writable. Exit 1 when training fails.
``train_plain`` runs the same step over the same batches in one process without Ray (benchmark and tests).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "ConfigError", "validate_config", "train_loop", "train_plain", "run", "main"]


class ConfigError(ValueError):
    """A bad argument or input (exit 2)."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a training run depends on (plain data: pickled to every worker, written to ``summary.json``)."""

    proposals: str | tuple[str, ...]  # folder(s) of jobs.proposals (local paths or fsspec URIs)
    out: str  # exported checkpoints, metrics, summary
    name: str  # Ray Train run name: rerunning with the same name (and storage) resumes
    storage: str = ""  # Ray Train storage_path; "" = <out>/ray_train
    arch: str = "fastpose_res18"  # models.sppe.build_sppe arch
    epochs: int = 3
    batch_size: int = 32  # per worker (AlphaPose: 32 per GPU)
    lr: float = 1e-3  # Adam base rate (AlphaPose's TRAIN.LR)
    milestones: tuple[int, ...] = (90, 120)  # MultiStepLR milestones (epochs), ×0.1 each
    dpg_milestones: tuple[int, ...] = (20, 50)  # milestones counted from dpg_from_epoch
    dpg_from_epoch: int | None = None  # 0-based epoch where DPG/PGPG rows replace the GT-box rows
    workers: int = 1
    cpus_per_worker: float = 0.5
    gpu: bool = False  # one GPU per worker (nccl)
    seed: int = 0
    sstn: bool = False
    parallel_sppe: str = ""  # checkpoint of the frozen parallel SPPE ("" = none)
    bf16: bool = False
    jc_targets: bool = False  # CrowdPose's JC-SPPE targets (interference joints at μ = 0.5)
    sigma: float = 2.0
    shuffle_buffer: int = 0  # rows of Ray Data's local shuffle buffer per worker (0 = file order)
    threads: int = 0  # torch threads per worker (0 = Ray's default: floor(cpus_per_worker), at least 1)
    val_gt: str = ""
    val_images: str = ""
    files: tuple[str, ...] = field(default=())  # resolved sample shards (filled by validate_config)
    num_joints: int = 17  # from the shards
    proposal_epochs: int = 1  # from the shards: epochs the proposals were drawn for (training epoch e reads e mod it)
    crop_hw: tuple[int, int] = (256, 192)  # from the shards

    @property
    def storage_path(self) -> str:
        return self.storage or _join(self.out, "ray_train")


# ---------------------------------------------------------------------------------------------------------------
# Validation (before Ray)
# ---------------------------------------------------------------------------------------------------------------


def validate_config(cfg: TrainConfig) -> TrainConfig:
    """Check every input and return the config with ``files``, ``num_joints`` and ``crop_hw`` filled in.

    Raises:
        ConfigError: with what is wrong and what to do.
    """
    from models.sppe import SPPE_ARCHS
    from pipelines.train import find_sample_shards, shard_info

    if cfg.arch not in SPPE_ARCHS:
        raise ConfigError(f"--arch {cfg.arch!r}: unknown; choose one of {', '.join(SPPE_ARCHS)}")
    for name, v, lo in (
        ("--epochs", cfg.epochs, 1),
        ("--batch-size", cfg.batch_size, 1),
        ("--workers", cfg.workers, 1),
    ):
        if v < lo:
            raise ConfigError(f"{name} {v}: must be ≥ {lo}")
    if not cfg.lr > 0 or not cfg.cpus_per_worker > 0 or cfg.threads < 0 or cfg.shuffle_buffer < 0:
        raise ConfigError("--lr and --cpus-per-worker must be > 0, --threads and --shuffle-buffer ≥ 0")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", cfg.name or ""):
        # it becomes a folder under --storage: letters, digits, '.', '_', '-' only (no '/', no '..', no spaces)
        raise ConfigError(f"--name {cfg.name!r}: a run name of letters, digits, '.', '_' and '-' (a folder name)")
    if cfg.parallel_sppe and not cfg.sstn:
        raise ConfigError("--parallel-sppe needs --sstn (RMPE's parallel SPPE sees the STN-transformed crop)")
    if cfg.dpg_from_epoch is not None and not 0 <= cfg.dpg_from_epoch < cfg.epochs:
        raise ConfigError(f"--dpg-from-epoch {cfg.dpg_from_epoch}: must be in [0, --epochs={cfg.epochs})")
    if bool(cfg.val_gt) != bool(cfg.val_images):
        raise ConfigError("--val-gt and --val-images go together")
    sources = (cfg.proposals,) if isinstance(cfg.proposals, str) else tuple(cfg.proposals)
    if not sources:
        raise ConfigError("--proposals: give at least one jobs.proposals folder")
    files = []
    for src in sources:  # e.g. a --mode gt run and a --mode dpg run for --dpg-from-epoch
        try:
            found = find_sample_shards(src)
        except (OSError, ValueError) as e:
            raise ConfigError(f"--proposals {src}: cannot list sample shards: {e}") from None
        if not found:
            raise ConfigError(
                f"--proposals {src}: no committed sample shards (samples/shard=*/part-0.parquet); "
                "run python -m jobs.proposals first"
            )
        files.extend(found)
    try:
        info = shard_info(files)
    except Exception as e:  # noqa: BLE001 - any unreadable shard is a usage error with the file named
        raise ConfigError(f"--proposals {', '.join(sources)}: unreadable sample shard: {e}") from None
    if len(info["num_joints"]) != 1 or len(info["crop_hw"]) != 1:
        raise ConfigError(
            f"--proposals {', '.join(sources)}: shards mix joint counts {info['num_joints']} or crop sizes "
            f"{info['crop_hw']}; train on one keypoint set and crop size at a time"
        )
    crop_hw = tuple(int(v) for v in info["crop_hw"][0])
    if crop_hw[0] % 32 or crop_hw[1] % 32:
        raise ConfigError(f"crops are {crop_hw[0]}×{crop_hw[1]}: models.sppe networks need multiples of 32")
    gt_rows = info["branches"].get("gt", 0)
    if cfg.dpg_from_epoch is not None and (gt_rows == 0 or gt_rows == info["rows"]):
        raise ConfigError(
            f"--dpg-from-epoch needs both branch == 'gt' rows and DPG/PGPG rows; the shards have {info['branches']}"
        )
    if cfg.jc_targets:
        from actors.train_samples import JC_COLUMNS

        if not set(JC_COLUMNS) <= set(info["columns"]):
            raise ConfigError(
                f"--jc-targets needs the interference joints of training schema ≥ 2 ({', '.join(JC_COLUMNS)}); "
                f"some shards of {', '.join(sources)} lack them: regenerate them with python -m jobs.proposals"
            )
    if info["rows"] < cfg.workers:
        raise ConfigError(f"{info['rows']} samples for {cfg.workers} workers")
    proposal_epochs = len(info["epochs"])
    if info["epochs"] != list(range(proposal_epochs)):
        raise ConfigError(
            f"--proposals {', '.join(sources)}: proposal epochs {info['epochs']} are not 0 … N−1; give the output of "
            "one jobs.proposals run (or runs with the same --epochs)"
        )
    cfg = _replace(
        cfg,
        files=tuple(files),
        num_joints=int(info["num_joints"][0]),
        crop_hw=crop_hw,
        proposal_epochs=proposal_epochs,
    )
    if cfg.parallel_sppe:
        from models.checkpoints import CheckpointError, load_checkpoint
        from models.sppe import build_sppe

        try:
            load_checkpoint(build_sppe(cfg.arch, cfg.num_joints), cfg.parallel_sppe)
        except CheckpointError as e:
            raise ConfigError(f"--parallel-sppe: {e}") from None
    if cfg.val_gt:
        _check_validation(cfg)
    try:
        import fsspec

        from store.writers import put_atomic

        probe = _join(cfg.out, "metrics", ".write_probe")
        put_atomic(b"ok", probe)  # local folders are created; an S3 prefix needs its bucket and credentials
        fs, path = fsspec.core.url_to_fs(probe)
        fs.rm(path)
    except Exception as e:  # noqa: BLE001 - whatever keeps --out from being written is a usage error
        raise ConfigError(f"--out {cfg.out}: not writable ({type(e).__name__}: {e})") from None
    return cfg


def _join(root: str, *parts: str) -> str:
    """A path or fsspec URI under ``--out`` (local folders and ``s3://`` alike)."""
    from store.writers import join_uri

    return join_uri(root, *parts) if "://" in root else os.path.join(root, *parts)


def _replace(cfg: TrainConfig, **kw) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def _check_validation(cfg: TrainConfig) -> None:
    from jobs.evaluate import EvaluationError, load_ground_truth

    try:
        gt = load_ground_truth(cfg.val_gt)
    except EvaluationError as e:
        raise ConfigError(f"--val-gt: {e}") from None
    if gt.keypoint_set.num_keypoints != cfg.num_joints:
        raise ConfigError(
            f"--val-gt has {gt.keypoint_set.num_keypoints} keypoints ({gt.keypoint_set.name}) but the samples have "
            f"{cfg.num_joints}"
        )
    missing = [
        img["file_name"]
        for img in gt.images.values()
        if gt.annotations.get(img["id"]) and not os.path.exists(os.path.join(cfg.val_images, img["file_name"]))
    ]
    if missing:
        raise ConfigError(f"--val-images {cfg.val_images}: {len(missing)} image(s) missing, e.g. {missing[0]}")


# ---------------------------------------------------------------------------------------------------------------
# Validation AP (rank 0): GT boxes → inference crop → decode → back-projection → COCO OKS AP
# ---------------------------------------------------------------------------------------------------------------


def load_validation_set(gt_path: str, images_dir: str, crop_hw: tuple[int, int]) -> dict:
    """The persons of a COCO keypoint GT (not crowd, ≥ 1 labelled joint) cut by the inference crop around their GT
    box (``CropSpec`` with the crop's aspect, ×1.25; ``models.transforms.crop_images``, AlphaPose's warp).

    Returns ``{"gt", "crops" uint8 [N, H, W, 3], "crop_boxes" float64 [N, 4], "image_ids" [N], "img_ids"}``.
    """
    import cv2

    from jobs.evaluate import load_ground_truth
    from models.transforms import CropSpec, crop_images

    gt = load_ground_truth(gt_path)
    spec = CropSpec(output_size_hw=crop_hw, aspect_ratio=crop_hw[1] / crop_hw[0])
    images, index, boxes, image_ids = [], [], [], []
    for img_id, anns in gt.annotations.items():
        persons = [a for a in anns if not a.get("iscrowd") and any(v > 0 for v in a.get("keypoints", [])[2::3])]
        if not persons:
            continue
        bgr = cv2.imread(os.path.join(images_dir, gt.images[img_id]["file_name"]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ConfigError(f"cannot read validation image {gt.images[img_id]['file_name']}")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        for a in persons:
            x, y, w, h = a["bbox"]
            boxes.append([x, y, x + w, y + h])
            index.append(len(images) - 1)
            image_ids.append(img_id)
    crop_boxes = spec.crop_boxes(np.asarray(boxes, np.float64).reshape(-1, 4))
    crops = crop_images(images, np.asarray(index), crop_boxes, crop_hw)
    return {"gt": gt, "crops": crops, "crop_boxes": crop_boxes, "image_ids": image_ids, "img_ids": sorted(gt.images)}


def validation_ap(model: torch.nn.Module, val: dict, *, device: str = "cpu", batch_size: int = 32) -> dict:
    """COCO keypoint AP/AR of ``model`` (the plain SPPE, eval mode) on ``load_validation_set``'s persons; box score 1,
    person score AlphaPose's ``mean + 1 + 1.25·max`` (``scripts/validate.py`` L128), no flip test, no pose NMS."""
    from jobs.evaluate import coco_keypoint_eval
    from models.heatmaps import heatmaps_to_keypoints, person_scores
    from models.transforms import normalize_crops

    was_training = model.training
    model.eval()
    kps_all, scores_all = [], []
    with torch.inference_mode():
        for i in range(0, len(val["crops"]), batch_size):
            x = normalize_crops(torch.as_tensor(val["crops"][i : i + batch_size])).to(device)
            hm = model(x).float()
            kps, sc = heatmaps_to_keypoints(hm, torch.as_tensor(val["crop_boxes"][i : i + batch_size]).to(device))
            kps_all.append(kps.cpu())
            scores_all.append(sc.cpu())
    model.train(was_training)
    if not kps_all:
        return {}
    kps = torch.cat(kps_all).numpy()
    sc = torch.cat(scores_all)
    person = person_scores(sc, torch.ones(len(sc))).numpy()
    gt = val["gt"]
    results = [
        {
            "image_id": img_id,
            "category_id": gt.category_id,
            "keypoints": np.concatenate([kps[n], sc[n].numpy()[:, None]], axis=1).reshape(-1).tolist(),
            "score": float(person[n]),
        }
        for n, img_id in enumerate(val["image_ids"])
    ]
    return {f"val_{k}": v for k, v in coco_keypoint_eval(gt, results, val["img_ids"]).items()}


# ---------------------------------------------------------------------------------------------------------------
# The training loop (each Ray Train worker), and the same loop without Ray
# ---------------------------------------------------------------------------------------------------------------


def _build(cfg: TrainConfig) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    from models.checkpoints import read_state_dict
    from models.train import build_optimizer, build_train_model

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    parallel = read_state_dict(cfg.parallel_sppe)[0] if cfg.parallel_sppe else None
    model = build_train_model(cfg.arch, cfg.num_joints, sstn=cfg.sstn, parallel_state=parallel)
    return model, build_optimizer(model, cfg.lr)


def _lr(cfg: TrainConfig, epoch: int) -> float:
    from models.train import learning_rate

    return learning_rate(
        epoch,
        base_lr=cfg.lr,
        milestones=cfg.milestones,
        dpg_from_epoch=cfg.dpg_from_epoch,
        dpg_milestones=cfg.dpg_milestones,
    )


def _autocast(cfg: TrainConfig) -> torch.dtype | None:
    return torch.bfloat16 if cfg.bf16 else None


def _save_bytes(obj, uri: str) -> None:
    from store.writers import put_atomic

    buf = io.BytesIO()
    torch.save(obj, buf)
    put_atomic(buf.getvalue(), uri)


def _export(cfg: TrainConfig, model: torch.nn.Module, epoch: int, last: bool) -> None:
    from models.train import export_state_dict

    state = export_state_dict(model)
    _save_bytes(state, _join(cfg.out, f"sppe_epoch_{epoch}.pth"))
    if last:
        _save_bytes(state, _join(cfg.out, "final.pth"))


def _write_epoch_metrics(cfg: TrainConfig, metrics: dict) -> None:
    from store.writers import put_atomic

    put_atomic(
        json.dumps(metrics, indent=1, sort_keys=True).encode(),
        _join(cfg.out, "metrics", f"epoch_{metrics['epoch']}.json"),
    )


def train_loop(config: dict) -> dict:
    """The Ray Train worker function: resume → per epoch: set LR, stream this worker's shard, step, report.

    ``config`` is ``{"cfg": TrainConfig}``. Returns (rank 0's is ``Result.return_value``) the first epoch this
    session trained (``start_epoch``; > 0 after a resume) and the last epoch's metrics.
    """
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    from models.train import set_learning_rate, train_epoch, unwrap
    from pipelines.train import dataset_name

    cfg: TrainConfig = config["cfg"]
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    model, opt = _build(cfg)
    start = 0
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(os.path.join(d, "state.pt"), map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["epoch"])
        logger.info("resuming %s after epoch %d", cfg.name, start)
    device = ray.train.torch.get_device()
    model = ray.train.torch.prepare_model(model)
    if cfg.gpu:  # optimizer state moved with the parameters
        for s in opt.state.values():
            for k, v in s.items():
                if torch.is_tensor(v) and k != "step":
                    s[k] = v.to(device)
    val = load_validation_set(cfg.val_gt, cfg.val_images, cfg.crop_hw) if cfg.val_gt and rank == 0 else None
    last: dict = {}
    for epoch in range(start, cfg.epochs):
        lr = _lr(cfg, epoch)
        set_learning_rate(opt, lr)
        dpg = cfg.dpg_from_epoch is not None and epoch >= cfg.dpg_from_epoch
        name = dataset_name(dpg, epoch, cfg.proposal_epochs)
        shard = ray.train.get_dataset_shard(name)
        batches = shard.iter_torch_batches(
            batch_size=cfg.batch_size,
            local_shuffle_buffer_size=cfg.shuffle_buffer or None,
            local_shuffle_seed=(cfg.seed * 100003 + epoch) if cfg.shuffle_buffer else None,
            prefetch_batches=2,
        )
        model.train()
        stats = train_epoch(model, opt, batches, device=device, autocast_dtype=_autocast(cfg))
        totals = torch.tensor([stats.loss_sum, float(stats.samples), float(stats.steps)], dtype=torch.float64)
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(totals)
        samples = int(totals[1])
        metrics = {
            "epoch": epoch + 1,
            "loss": float(totals[0] / totals[1]) if samples else math.nan,
            "samples": samples,
            "steps_per_worker": stats.steps,
            "seconds": stats.seconds,
            "first_batch_s": stats.first_batch_s,
            "data_wait_s": stats.data_wait_s,
            "samples_per_s": samples / stats.seconds if stats.seconds > 0 else math.nan,
            "lr": lr,
            "phase": "dpg" if dpg else "plain",
            "proposal_epoch": epoch % cfg.proposal_epochs,
            "workers": world,
        }
        if rank == 0:
            if val is not None:
                base = unwrap(model)
                metrics.update(validation_ap(getattr(base, "sppe", base), val, device=str(device)))
            _export(cfg, model, epoch + 1, last=epoch + 1 == cfg.epochs)
            _write_epoch_metrics(cfg, metrics)
            with tempfile.TemporaryDirectory() as d:
                torch.save(
                    {
                        "model": unwrap(model).state_dict(),
                        "optimizer": opt.state_dict(),
                        "epoch": epoch + 1,
                        "torch_rng": torch.get_rng_state(),
                    },
                    os.path.join(d, "state.pt"),
                )
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics, checkpoint=None)
        last = metrics
    return {"start_epoch": start, "last": last}


def train_plain(cfg: TrainConfig, *, epochs: int | None = None, threads: int | None = None) -> list[dict]:
    """The same training without Ray: one process, shards read in order (``pipelines.train.iter_local_batches``),
    the same ``models.train`` step, schedule and seed. Returns per-epoch ``{"epoch", "loss", "samples",
    "samples_per_s", "seconds"}``; ``train_plain_model`` also returns the model. Writes nothing. With one Ray worker,
    no shuffle buffer and the same threads, ``run`` trains bit-identical weights (tests/jobs/test_train_sppe.py).

    Example (as the tests run it)::

        cfg = validate_config(TrainConfig(proposals="props", out="out", name="p", batch_size=4, epochs=1))
        stats = train_plain(cfg, threads=1)
    """
    return train_plain_model(cfg, epochs=epochs, threads=threads)[1]


def train_plain_model(
    cfg: TrainConfig, *, epochs: int | None = None, threads: int | None = None
) -> tuple[torch.nn.Module, list[dict]]:
    """``train_plain`` returning the trained model too."""
    from models.train import set_learning_rate, train_epoch
    from pipelines.train import iter_local_batches

    if threads:
        torch.set_num_threads(threads)
    model, opt = _build(cfg)
    model.train()
    device = "cuda" if cfg.gpu and torch.cuda.is_available() else "cpu"
    model.to(device)
    out = []
    for epoch in range(epochs or cfg.epochs):
        set_learning_rate(opt, _lr(cfg, epoch))
        branch = "all" if cfg.dpg_from_epoch is None else ("dpg" if epoch >= cfg.dpg_from_epoch else "gt")
        batches = iter_local_batches(
            list(cfg.files),
            cfg.batch_size,
            branch=branch,
            sigma=cfg.sigma,
            centre_targets=bool(cfg.parallel_sppe),
            jc_targets=cfg.jc_targets,
            proposal_epoch=epoch % cfg.proposal_epochs if cfg.proposal_epochs > 1 else None,
        )
        stats = train_epoch(model, opt, batches, device=device, autocast_dtype=_autocast(cfg))
        out.append(
            {
                "epoch": epoch + 1,
                "loss": stats.loss,
                "samples": stats.samples,
                "seconds": stats.seconds,
                "first_batch_s": stats.first_batch_s,
                "data_wait_s": stats.data_wait_s,
                "samples_per_s": stats.samples / stats.seconds if stats.seconds > 0 else math.nan,
            }
        )
    return model, out


# ---------------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------------


def _check_cpus(cfg: TrainConfig) -> None:
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 0))
    need = cfg.workers * cfg.cpus_per_worker
    if need > cpus - 0.5:
        raise ConfigError(
            f"{cfg.workers} workers × {cfg.cpus_per_worker} CPU = {need} of the cluster's {cpus} CPUs leaves Ray Data "
            "less than half a CPU: the run would hang (ray-train-notes §2.3); lower --cpus-per-worker or --workers"
        )
    if cfg.gpu and float(ray.cluster_resources().get("GPU", 0)) < cfg.workers:
        raise ConfigError(
            f"--gpu with {cfg.workers} workers but the cluster has {ray.cluster_resources().get('GPU', 0)}"
        )


def run(cfg: TrainConfig) -> dict:
    """Train (or resume) a validated config on the current Ray cluster; returns the summary written to
    ``<out>/summary.json``."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines.train import build_train_datasets, configure_data_context

    _check_cpus(cfg)
    configure_data_context(preserve_order=True)
    datasets = build_train_datasets(
        list(cfg.files),
        dpg_from_epoch=cfg.dpg_from_epoch,
        sigma=cfg.sigma,
        centre_targets=bool(cfg.parallel_sppe),
        jc_targets=cfg.jc_targets,
        batch_size=cfg.batch_size,
        proposal_epochs=cfg.proposal_epochs,
    )
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.gpu else {})}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"cfg": cfg},
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=list(datasets)),
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.gpu, resources_per_worker=resources),
        run_config=RunConfig(
            storage_path=cfg.storage_path,
            name=cfg.name,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=2),
        ),
    )
    t0 = time.time()
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"training failed: {result.error}")
    ret = result.return_value or {}
    return write_summary(cfg, ret, result.checkpoint.path if result.checkpoint else None, time.time() - t0)


def write_summary(cfg: TrainConfig, ret: dict, ray_checkpoint: str | None, wall_s: float) -> dict:
    """Gather the per-epoch metrics under ``--out`` into ``metrics.parquet`` and write ``summary.json`` (local or
    any fsspec URI); returns the summary."""
    import fsspec
    import pyarrow as pa

    from store.writers import put_atomic, write_table_atomic

    rows = []
    for e in range(1, cfg.epochs + 1):
        fs, path = fsspec.core.url_to_fs(_join(cfg.out, "metrics", f"epoch_{e}.json"))
        if fs.exists(path):
            with fs.open(path, "rb") as f:
                rows.append(json.loads(f.read()))
    if rows:
        keys = sorted({k for r in rows for k in r})
        write_table_atomic(pa.table({k: [r.get(k) for r in rows] for k in keys}), _join(cfg.out, "metrics.parquet"))
    summary = {
        "config": {k: v for k, v in asdict(cfg).items() if k != "files"},
        "num_shards": len(cfg.files),
        "start_epoch": ret.get("start_epoch"),
        "resumed": bool(ret.get("start_epoch")),
        "epochs": rows,
        "final_checkpoint": _join(cfg.out, "final.pth"),
        "ray_checkpoint": ray_checkpoint,
        "wall_s": wall_s,
    }
    put_atomic(json.dumps(summary, indent=1, default=str).encode(), _join(cfg.out, "summary.json"))
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.train_sppe", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--proposals",
        required=True,
        action="append",
        help="jobs.proposals output folder (samples/shard=*/part-0.parquet); repeatable, e.g. a --mode gt and a "
        "--mode dpg run for --dpg-from-epoch",
    )
    p.add_argument("--out", required=True, help="exported checkpoints, metrics and summary (local folder)")
    p.add_argument("--name", required=True, help="run name; rerunning with the same name resumes")
    p.add_argument("--storage", default="", help="Ray Train storage_path (default OUT/ray_train; s3:// on a cluster)")
    p.add_argument("--arch", default="fastpose_res18")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32, help="per worker")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--milestones", type=int, nargs="*", default=[90, 120])
    p.add_argument("--dpg-from-epoch", type=int, default=None, help="0-based epoch from which DPG/PGPG rows are used")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--cpus-per-worker", type=float, default=0.5)
    p.add_argument("--gpu", action="store_true", help="one GPU per worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sstn", action="store_true", help="RMPE's SSTN around the SPPE")
    p.add_argument("--parallel-sppe", default="", help="frozen parallel SPPE checkpoint (needs --sstn)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast of the forward pass")
    p.add_argument(
        "--jc-targets",
        action="store_true",
        help="CrowdPose's JC-SPPE targets: other persons' joints in the crop as 0.5 peaks (Li et al., CVPR 2019)",
    )
    p.add_argument("--shuffle-buffer", type=int, default=0, help="local shuffle buffer rows per worker (0: none)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: Ray's default)")
    p.add_argument("--val-gt", default="", help="COCO keypoint GT JSON for per-epoch AP (with --val-images)")
    p.add_argument("--val-images", default="", help="folder of the --val-gt images")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig(
        proposals=tuple(args.proposals),
        out=args.out if "://" in args.out else os.path.abspath(args.out),
        name=args.name,
        storage=args.storage if "://" in args.storage else (os.path.abspath(args.storage) if args.storage else ""),
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        milestones=tuple(args.milestones),
        dpg_from_epoch=args.dpg_from_epoch,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpu=args.gpu,
        seed=args.seed,
        sstn=args.sstn,
        parallel_sppe=args.parallel_sppe,
        bf16=args.bf16,
        jc_targets=args.jc_targets,
        shuffle_buffer=args.shuffle_buffer,
        threads=args.threads,
        val_gt=os.path.abspath(args.val_gt) if args.val_gt else "",
        val_images=os.path.abspath(args.val_images) if args.val_images else "",
    )
    try:
        cfg = validate_config(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import ray

    from jobs.ray_init import init_ray

    init_ray(logging_level="ERROR")
    try:
        summary = run(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a failed run is exit 1 with the reason
        logger.exception("training failed")
        print(f"error: training failed: {e}", file=sys.stderr)
        return 1
    finally:
        ray.shutdown()
    last = summary["epochs"][-1] if summary["epochs"] else {}
    print(
        f"trained {cfg.arch} for {cfg.epochs} epochs (started at epoch {summary['start_epoch']}); "
        f"last loss {last.get('loss')}; checkpoint {summary['final_checkpoint']}; summary {cfg.out}/summary.json"
    )
    return 0


INTERRUPTED = (
    "interrupted: registered checkpoints are kept; rerun the same command (same --name and --storage) to resume"
)


def _cli() -> int:
    """``python -m jobs.train_sppe``: :func:`main`; a Ctrl-C prints one line and exits 130
    (``jobs.ray_init.run_interruptible``)."""
    from jobs.ray_init import run_interruptible

    return run_interruptible(main, INTERRUPTED)


if __name__ == "__main__":
    sys.exit(_cli())
