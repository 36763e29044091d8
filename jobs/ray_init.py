"""How every job joins or starts Ray: one rule, so ``ray job submit`` never gets resources passed to its cluster."""

from __future__ import annotations

import os

__all__ = ["init_ray"]


def init_ray(num_cpus: int | None = None, logging_level: str = "WARNING") -> None:
    """Connect to the cluster named by ``RAY_ADDRESS`` (as under ``ray job submit``; ``num_cpus`` is then ignored:
    resources cannot be given to an existing cluster), else start a local Ray with ``num_cpus`` CPUs (None: all) and
    no dashboard. Does nothing when Ray is already initialised."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging_level)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging_level)
