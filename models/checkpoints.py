"""Checkpoint loading for the SPPE: weights-only, strict, with errors that name the file and the keys.

Checkpoints are data (``KnownCheckpoint``): which architecture, keypoint set and input size a file belongs to, so a
file cannot be paired with the wrong head silently. Loading reads bytes through fsspec (local paths, ``s3://``,
``http(s)://`` when online), hashes them (sha256, recorded in every output table) and unpickles with
``torch.load(..., weights_only=True)``, which refuses any object that is not a tensor or plain container: a
checkpoint that carries code is rejected without running it.

Official AlphaPose files are plain ``state_dict``s saved from ``model.module`` (no ``module.`` prefix: AlphaPose's
``scripts/train.py`` saves ``m.module.state_dict()``); files saved from a ``DataParallel`` model (``module.``
prefix) and files wrapping the state dict under ``"state_dict"`` or ``"model"`` are accepted too.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from models.uris import redact_uri

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "KnownCheckpoint",
    "KNOWN_CHECKPOINTS",
    "LoadedCheckpoint",
    "CheckpointInfo",
    "read_state_dict",
    "load_state_dict_strict",
    "load_checkpoint",
    "inspect_state_dict",
    "redact_uri",
]


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, unsafe, or does not fit the model; the message names file and keys."""


@dataclass(frozen=True)
class KnownCheckpoint:
    """An official checkpoint and what it fits.

    ``sha256`` is None where no copy of the file has been seen by this project (no downloads reach our machines);
    ``models.checkpoints.load_checkpoint`` still reports the hash of whatever file it loaded.
    """

    filename: str
    arch: str
    num_joints: int
    keypoint_set: str
    input_size_hw: tuple[int, int]
    source: str
    coco_ap: float | None = None
    sha256: str | None = None


KNOWN_CHECKPOINTS: dict[str, KnownCheckpoint] = {
    c.filename: c
    for c in (
        KnownCheckpoint(
            filename="fast_res50_256x192.pth",
            arch="fastpose_res50",
            num_joints=17,
            keypoint_set="coco17",
            input_size_hw=(256, 192),
            coco_ap=72.0,
            source="AlphaPose MODEL_ZOO, configs/coco/resnet/256x192_res50_lr1e-3_1x.yaml",
        ),
        KnownCheckpoint(
            filename="fast_421_res152_256x192.pth",
            arch="fastpose_duc_res152",
            num_joints=17,
            keypoint_set="coco17",
            input_size_hw=(256, 192),
            coco_ap=73.3,
            source="AlphaPose MODEL_ZOO, configs/coco/resnet/256x192_res152_lr1e-3_1x-duc.yaml",
        ),
    )
}


@dataclass(frozen=True)
class LoadedCheckpoint:
    """What ``load_checkpoint`` loaded: the source (credentials stripped), its sha256 and the tensor count."""

    source: str
    sha256: str
    num_tensors: int


@dataclass(frozen=True)
class CheckpointInfo:
    """Architecture facts read off a state dict's keys and shapes (see ``inspect_state_dict``)."""

    arch: str
    num_joints: int
    conv_dim: int
    num_params: int
    num_tensors: int


_LIST_LIMIT = 8


def _read_bytes(path_or_url: str) -> bytes:
    import fsspec  # imported here: models/ stays importable without it for pure-array users

    try:
        with fsspec.open(str(path_or_url), "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {redact_uri(path_or_url)}") from None
    except IsADirectoryError:
        raise CheckpointError(f"checkpoint path is a directory: {redact_uri(path_or_url)}") from None


def _unwrap(obj: object, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
    raise CheckpointError(
        f"{source}: not a state dict (expected a mapping of parameter names to tensors, optionally under "
        f"'state_dict' or 'model'; got {type(obj).__name__})"
    )


def read_state_dict(path_or_url: str) -> tuple[dict[str, torch.Tensor], str]:
    """Read a checkpoint file safely.

    Args:
        path_or_url: local path or fsspec URL (``s3://bucket/key.pth``).
    Returns:
        ``(state_dict, sha256_hex)``; tensors on the CPU, any ``module.`` prefix removed.
    Raises:
        CheckpointError: missing, truncated or corrupt file; a pickle that references anything other than tensors
            and plain containers (nothing in it is executed); or content that is not a state dict.
    """
    source = redact_uri(path_or_url)
    data = _read_bytes(path_or_url)
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        raise CheckpointError(f"{source}: file is empty")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{source}: refused to load: the file holds objects other than tensors and plain containers, so it "
            f"could run code when unpickled; it was not executed. Re-save it as a plain state_dict "
            f"(python -m jobs.checkpoint convert) from a trusted environment. Detail: {first}"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{source}: truncated or corrupt checkpoint ({len(data)} bytes): {first}") from None
    state = _unwrap(obj, source)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, digest


def _fmt(items: list, limit: int = _LIST_LIMIT) -> str:
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f" … (+{len(items) - limit} more)" if len(items) > limit else "")


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "<state_dict>") -> None:
    """Load ``state`` into ``model`` requiring every key and shape to match.

    BatchNorm ``num_batches_tracked`` buffers absent from the file (older PyTorch) keep their default; everything
    else missing, unexpected or mis-shaped raises ``CheckpointError`` naming the keys, with a plain-language line
    when the heatmap head's joint count differs.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        lines = [f"{source}: checkpoint does not fit {type(model).__name__}"]
        w = state.get("conv_out.weight")
        if w is not None and "conv_out.weight" in expected and w.shape[0] != expected["conv_out.weight"].shape[0]:
            lines.append(
                f"  the file predicts {w.shape[0]} keypoints but the model was built for "
                f"{expected['conv_out.weight'].shape[0]} (pass num_joints={w.shape[0]} or choose another file)"
            )
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_fmt(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_fmt(unexpected)}")
        if mismatched:
            lines.append(f"  mismatched shapes ({len(mismatched)}): {_fmt(mismatched)}")
        raise CheckpointError("\n".join(lines))
    full = dict(state)
    for k, v in expected.items():
        if k not in full:  # only num_batches_tracked reaches here
            full[k] = v
    model.load_state_dict(full, strict=True)


def load_checkpoint(model: nn.Module, path_or_url: str) -> LoadedCheckpoint:
    """Load an SPPE checkpoint into ``model`` (in place), weights-only and strict.

    Args:
        model: a network from ``models.sppe.build_sppe`` (or any module with matching keys).
        path_or_url: local path or fsspec URL of an AlphaPose-format ``.pth`` (plain or ``module.``-prefixed).
    Returns:
        ``LoadedCheckpoint`` with the sha256 of the file's bytes.
    Raises:
        CheckpointError: see ``read_state_dict`` and ``load_state_dict_strict``.
    """
    source = redact_uri(path_or_url)
    state, digest = read_state_dict(path_or_url)
    load_state_dict_strict(model, state, source)
    logger.info("loaded %s (sha256 %s, %d tensors) into %s", source, digest[:12], len(state), type(model).__name__)
    return LoadedCheckpoint(source=source, sha256=digest, num_tensors=len(state))


_BLOCKS_TO_DEPTH = {
    ("basic", (2, 2, 2, 2)): 18,
    ("basic", (3, 4, 6, 3)): 34,
    ("bottleneck", (3, 4, 6, 3)): 50,
    ("bottleneck", (3, 4, 23, 3)): 101,
    ("bottleneck", (3, 8, 36, 3)): 152,
}


def _inspect_hrnet_hardnet(state: Mapping[str, torch.Tensor]) -> CheckpointInfo | None:
    """HRNet-W32 (``stage4.*`` + ``final_layer``, ``models.hrnet``) or HarDNet-68/85 (``base.*`` + ``conv_out.2``,
    ``models.hardnet``; 68 has ``base.0``–``base.11``, 85 ``base.0``–``base.13``), else None."""
    if "final_layer.weight" in state and any(k.startswith("stage4.") for k in state):
        arch, head = "hrnet_w32", state["final_layer.weight"]
    elif "base.0.conv.weight" in state and "conv_out.2.weight" in state:
        last = max(int(m.group(1)) for k in state if (m := re.match(r"base\.(\d+)\.", k)))
        arch = {11: "hardnet68", 13: "hardnet85"}.get(last)
        if arch is None:
            raise CheckpointError(f"unknown HarDNet: its base ends at module {last} (68 ends at 11, 85 at 13)")
        head = state["conv_out.2.weight"]
    else:
        return None
    return CheckpointInfo(
        arch=arch,
        num_joints=int(head.shape[0]),
        conv_dim=int(head.shape[1]),
        num_params=int(sum(v.numel() for k, v in state.items() if v.is_floating_point() and "running_" not in k)),
        num_tensors=len(state),
    )


def inspect_state_dict(state: Mapping[str, torch.Tensor]) -> CheckpointInfo:
    """Work out which ``build_sppe`` architecture a state dict belongs to, from its keys and shapes alone."""
    other = _inspect_hrnet_hardnet(state)
    if other is not None:
        return other
    head = "final_layer.weight" if "final_layer.weight" in state else "conv_out.weight"
    if head not in state or "preact.conv1.weight" not in state:
        raise CheckpointError(
            "not a FastPose state dict: no 'preact.conv1.weight' / 'conv_out.weight' keys (nor SimplePose's "
            "'final_layer.weight')"
        )
    counts = []
    for stage in range(1, 5):
        idx = {int(m.group(1)) for k in state if (m := re.match(rf"preact\.layer{stage}\.(\d+)\.", k))}
        counts.append(max(idx) + 1 if idx else 0)
    block = "bottleneck" if "preact.layer1.0.conv3.weight" in state else "basic"
    depth = _BLOCKS_TO_DEPTH.get((block, tuple(counts)))
    if depth is None:
        raise CheckpointError(f"unknown backbone: {block} blocks per stage {tuple(counts)}")
    if head == "final_layer.weight":
        arch = f"simplepose_res{depth}"
    elif "duc3.1.weight" in state:
        shuffle = "preact.layer2.0.conv2.1.weight" in state  # ShuffleResnet: PixelUnshuffle + conv in conv2
        arch = f"fastpose_duc_res{depth}" + ("_shuffle" if shuffle else "")
    elif "preact.layer2.0.conv2_offset.weight" in state:
        arch = f"fastpose_dcn_res{depth}"
    else:
        arch = f"fastpose_res{depth}"
    w = state[head]
    return CheckpointInfo(
        arch=arch,
        num_joints=int(w.shape[0]),
        conv_dim=int(w.shape[1]),
        num_params=int(sum(v.numel() for k, v in state.items() if v.is_floating_point() and "running_" not in k)),
        num_tensors=len(state),
    )
