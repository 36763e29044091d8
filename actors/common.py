"""Small helpers every actor shares: device choice inside Ray, and per-row access to ragged batch columns.

Ray Data hands a numpy batch whose per-frame person arrays (``[n_i, …]``) arrive either stacked (all rows the same
shape) or as an object array of arrays (variable shapes); ``rows_of`` gives a list of arrays in both cases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["pick_device", "pick_device_name", "rows_of", "ragged", "is_error"]


def pick_device_name(device: str) -> str:
    """``"cpu"``/``"cuda"``/``"cuda:1"`` as given; ``"auto"`` → ``"cuda"`` only if Ray assigned this worker a GPU.

    Inside Ray the GPU assignment (``ray.get_gpu_ids()``), not ``torch.cuda.is_available()``, decides: since
    Ray 2.48 a worker given no GPU can still see the node's GPUs (ray-project/ray#54868). Outside Ray (tests,
    notebooks) ``"auto"`` uses CUDA when available. Inside Ray it needs no torch (a detection stage that only looks
    boxes up never imports it).
    """
    if device != "auto":
        return device
    try:
        import ray

        if ray.is_initialized():
            return "cuda" if ray.get_gpu_ids() else "cpu"
    except ImportError:
        pass
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_device(device: str) -> torch.device:
    """``pick_device_name`` as a ``torch.device``."""
    import torch  # here, not at import: the CPU-only stages that share this module never load torch

    return torch.device(pick_device_name(device))


def rows_of(column) -> list[np.ndarray]:
    """The per-row arrays of a (possibly ragged) batch column."""
    if isinstance(column, np.ndarray) and column.dtype != object:
        return list(column)
    return [np.asarray(x) for x in column]


def ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """A batch column of per-row arrays (object array, so rows may differ in their first dimension)."""
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


def is_error(batch: dict) -> np.ndarray:
    """bool ``[B]``: rows that carry an error from an earlier stage (they pass through untouched)."""
    if "error" not in batch:
        return np.zeros(len(next(iter(batch.values()))), bool)
    return np.array([bool(e) for e in batch["error"]], dtype=bool)
