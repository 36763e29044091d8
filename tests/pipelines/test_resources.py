"""Resource planning (``plan_resources``): the default config uses every core and always leaves room for tasks.

Issue 13: Ray pins an actor's ``OMP_NUM_THREADS`` to its CPU reservation, so the single SPPE actor of the old
default (0.5 CPU) ran on one thread of a 2-core machine. Issue 14: reservations that took every CPU hung.
"""

from __future__ import annotations

import sys

import pytest
import torch

from actors.sppe import SPPE
from pipelines.configs import from_mapping
from pipelines.label import (
    MAX_THREADS_PER_ACTOR,
    LabelConfig,
    actor_stage,
    check_resources,
    cpu_actor_env,
    plan_resources,
)

PRECOMPUTED = {
    "detector": {"arch": "precomputed", "weights": "d.json", "key_column": "frame_key"},
    "sppe": {"random_weights": True},
}
YOLO_BLAZE = {"detector": {"arch": "yolo", "weights": "y.pt"}, "sppe": {"arch": "blazepose_full"}}
YOLO_ONLY = {"detector": {"arch": "yolo", "weights": "y.pt"}, "sppe": {"arch": "detector"}}


def _cfg(base: dict, **resources) -> LabelConfig:
    return from_mapping(LabelConfig, {**base, "resources": resources})


def test_two_cpus_give_the_sppe_actor_both_cores():
    r = plan_resources(_cfg(PRECOMPUTED), 2).resources
    assert (r.sppe.actors, r.sppe.num_cpus, r.sppe.threads) == (1, 0.75, 2)
    assert r.sppe.streams == 2  # two single-thread forwards at once (models.streams)
    assert (r.detect.actors, r.detect.num_cpus, r.detect.threads, r.detect.streams) == (1, 0.25, 1, 1)


def test_network_detector_and_sppe_share_the_cores():
    r = plan_resources(_cfg(YOLO_BLAZE), 4).resources
    assert (r.detect.num_cpus, r.sppe.num_cpus) == (1.0, 2.0)  # 4 − 1 for tasks, split 1 : 2
    assert r.detect.threads + r.sppe.threads == 4
    r = plan_resources(_cfg(YOLO_ONLY), 2).resources
    assert (r.detect.num_cpus, r.detect.threads) == (1.0, 2)


@pytest.mark.parametrize("base", [PRECOMPUTED, YOLO_BLAZE, YOLO_ONLY])
@pytest.mark.parametrize("cpus", [1, 2, 3, 4, 8, 16, 48, 64, 96])
def test_planned_defaults_always_leave_room_and_never_oversubscribe(base, cpus):
    cfg = plan_resources(_cfg(base), cpus)
    check_resources(cfg, cpus)  # would raise if the CPU tasks had no room (the issue-14 hang)
    r = cfg.resources
    pools = [r.detect] + ([r.sppe] if cfg.sppe.arch != "detector" else [])
    assert sum(p.actors * p.num_cpus for p in pools) <= cpus - 0.25 + 1e-9
    heavy = pools if cfg.detector.arch != "precomputed" else pools[1:]  # precomputed boxes: crop cutting only
    threads = sum(p.actors * p.threads for p in heavy)
    assert threads <= max(cpus, len(heavy))  # never more network threads than cores (one each at least)
    assert all(1 <= p.threads <= MAX_THREADS_PER_ACTOR for p in pools)
    if cpus >= 16:
        assert threads >= 0.6 * cpus  # and the cores are used


def test_explicit_values_win_and_are_still_checked():
    cfg = plan_resources(_cfg(PRECOMPUTED, sppe={"num_cpus": 1, "threads": 3, "actors": 2}), 8)
    assert (cfg.resources.sppe.actors, cfg.resources.sppe.num_cpus, cfg.resources.sppe.threads) == (2, 1, 3)
    with pytest.raises(ValueError, match=r"detect 1 actor × 1 CPU \+ sppe 1 actor × 1 CPU = 2 of 2 CPUs leaves 0"):
        check_resources(_cfg(PRECOMPUTED, detect={"num_cpus": 1}, sppe={"num_cpus": 1}), 2)
    with pytest.raises(ValueError, match="threads must be ≥ 1"):
        _cfg(PRECOMPUTED, sppe={"threads": 0})


def test_streams_split_an_even_thread_count_and_are_checked():
    r = plan_resources(_cfg(PRECOMPUTED, sppe={"threads": 3}), 4).resources
    assert r.sppe.streams == 1  # odd: one forward on all three
    r = plan_resources(_cfg(PRECOMPUTED, sppe={"threads": 4, "streams": 4}), 4).resources
    assert (r.sppe.threads, r.sppe.streams) == (4, 4)  # given values win
    r = plan_resources(_cfg(PRECOMPUTED, sppe={"num_gpus": 1}), 4, gpus=1).resources
    assert r.sppe.streams == 1  # a GPU actor runs one forward at a time
    with pytest.raises(ValueError, match="streams must be between 1 and threads"):
        _cfg(PRECOMPUTED, sppe={"threads": 2, "streams": 3})
    with pytest.raises(ValueError, match=r"streams must be between 1 and threads \(2\)"):  # planned threads: 2
        check_resources(_cfg(PRECOMPUTED, sppe={"streams": 4}), 2)
    with pytest.raises(ValueError, match="only the SPPE pool"):
        _cfg(PRECOMPUTED, detect={"streams": 2})


class ThreadReport(SPPE):
    """The real SPPE actor, reporting the torch threads it runs with instead of keypoints."""

    def __call__(self, batch):
        import os

        n = len(batch["id"])
        # torch threads inside each stream (the threads the forwards run on), times the streams running at once
        per_stream = set(self.streams.map(lambda a, b: torch.get_num_threads(), 2, 1))
        used = self.streams.streams * max(per_stream)
        return {"threads": [used] * n, "omp_wait": [os.environ.get("OMP_WAIT_POLICY", "")] * n}


@pytest.mark.ray
@pytest.mark.slow
def test_default_sppe_actor_runs_more_than_one_thread_on_two_cpus():
    """Through Ray Data's actor pool, as the pipeline builds it: Ray sets OMP_NUM_THREADS=1 for the 0.75-CPU
    reservation; the planned threads must win (before the fix: 1). Now two streams of one thread each."""
    import ray
    import ray.data

    cfg = from_mapping(LabelConfig, {**PRECOMPUTED, "sppe": {"arch": "fastpose_res18", "random_weights": True}})
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules
    try:
        planned = plan_resources(cfg, ray.cluster_resources()["CPU"])
        ds = actor_stage(
            ray.data.range(4),
            ThreadReport,
            planned.sppe,
            planned.resources.sppe,
            threads=planned.resources.sppe.threads,
            streams=planned.resources.sppe.streams,
        )
        rows = ds.take_all()
        assert {r["threads"] for r in rows} == {2}
        assert {r["omp_wait"] for r in rows} == {"PASSIVE"}  # OpenMP threads sleep when idle (cpu_actor_env)
    finally:
        ray.shutdown()


def test_cpu_actors_sleep_idle_openmp_threads_unless_the_user_chose():
    assert cpu_actor_env({}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert cpu_actor_env({"OMP_WAIT_POLICY": "ACTIVE"}) == {"OMP_WAIT_POLICY": "ACTIVE"}
