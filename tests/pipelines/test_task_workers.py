"""The label pipeline's CPU tasks run in Ray worker processes that import only the modules their functions live
in: those modules must not import torch (importing it takes 1.8–1.9 s per worker process, on a 2-core machine where
the SPPE actor needs every cycle; issue 13). The same holds for a job's driver: it validates its configuration and
hands the stage classes to Ray Data without ever importing torch (beside ``ray.init`` the import slowed Ray's start-up
by 0.6–1.5 s); only the actors that build the networks load it."""

from __future__ import annotations

import subprocess
import sys

from actors.pose_nms import apply_pose_nms
from actors.publish import publish_video, stage_rows
from pipelines.decode import decode_batch, probe_batch


def test_task_functions_live_in_modules_that_do_not_import_torch():
    """Nor SciPy's optimizers (0.25 s), which only tracking (``publish_video``) and crowd association call."""
    modules = sorted({f.__module__ for f in (decode_batch, probe_batch, apply_pose_nms, stage_rows, publish_video)})
    assert "pipelines.label" not in modules  # Ray imports a task function's module in the worker
    heavy = ("torch", "scipy.optimize", "sklearn")
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(sorted(m for m in sys.modules if m in {heavy!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"{modules} import {out.strip()}"


def test_no_task_function_is_defined_in_the_pipeline_module():
    """Every function ``pipelines.label`` hands to ``map_batches`` or ``ray.remote`` comes from a torch-free module."""
    import ast
    from pathlib import Path

    import pipelines.label as label

    tree = ast.parse(Path(label.__file__).read_text())
    handed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Name):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("map_batches", "remote"):
                handed.add(node.args[0].id)
    assert {"decode_batch", "probe_batch", "apply_pose_nms", "stage_rows", "publish_video"} <= handed
    for name in handed:
        obj = getattr(label, name, None)
        if obj is None or isinstance(obj, type):
            continue  # a parameter (actor_stage's cls), or actor classes: they run in processes that need torch
        assert obj.__module__ != "pipelines.label", f"{name} would make every CPU-task worker import torch"


def test_the_driver_validates_a_job_without_importing_torch(tmp_path):
    """What ``jobs.label`` does before Ray starts (config, resources, weights digests for precomputed boxes and a
    random SPPE, the run summary's inference form) imports no torch, nor do the modules of the stage classes it hands
    to Ray Data; building an SPPE (what its actor does) does."""
    dets = tmp_path / "dets.json"
    dets.write_text('[{"image_id": "a.jpg", "category_id": 1, "score": 0.9, "bbox": [1, 2, 30, 40]}]')
    code = f"""
import sys
from jobs.label import _detector_digest, _resolve_weights, _sppe_digest, build_config
from pipelines.label import check_resources, plan_resources
from actors.configs import inference_form
cfg = build_config(None, ["detector.arch=precomputed", "detector.weights={dets}", "sppe.random_weights=true"])
check_resources(cfg, 2.0)
cfg = plan_resources(_resolve_weights(cfg), 2.0)
_sppe_digest(cfg.sppe, _detector_digest(cfg.detector))
inference_form(cfg.sppe)
print("torch" in sys.modules)
from pipelines.label import build_label_dataset
from actors.detect import Detector
from actors.sppe import SPPE
print("torch" in sys.modules)
SPPE(cfg.sppe, threads=1)
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True"]
