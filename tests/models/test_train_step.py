"""models.train: targets, the training step, the schedule, DDP equivalence and the exported checkpoint (issue 16)."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

from models.checkpoints import load_checkpoint
from models.sppe import build_sppe
from models.sstn import SSTNPose
from models.targets import gaussian_targets
from models.train import (
    build_optimizer,
    build_train_model,
    centre_frame_targets,
    compute_loss,
    export_state_dict,
    learning_rate,
    prepare_batch,
    render_targets,
    train_epoch,
    train_step,
)

CROP_HW = (64, 32)  # the smallest FastPose-compatible crop (multiples of 32) with a 16×8 map: keeps tests fast


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: tiny steps gain nothing from two, and on a shared 2-core machine two threads per process
    were 6-15× slower (oversubscription) than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _samples(n: int, k: int = 17, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic crops with a bright blob at each joint, so the network has something to learn."""
    rng = np.random.default_rng(seed)
    h, w = CROP_HW
    kps = np.stack([rng.uniform(4, w - 4, (n, k)), rng.uniform(4, h - 4, (n, k))], axis=-1).astype(np.float32)
    weight = (rng.uniform(size=(n, k)) > 0.2).astype(np.float32)
    kps[weight == 0] = np.nan
    crops = rng.integers(0, 40, (n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        for j in range(k):
            if weight[i, j]:
                x, y = int(kps[i, j, 0]), int(kps[i, j, 1])
                crops[i, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2, j % 3] = 255
    return crops, kps, weight


def _batch(n: int = 4, **kw) -> dict[str, torch.Tensor]:
    crops, kps, w = _samples(n)
    return {k: torch.as_tensor(v) for k, v in prepare_batch(crops, kps, w, **kw).items()}


def test_render_targets_are_gaussian_targets_at_stride_4():
    _, kps, w = _samples(3)
    t, tw = render_targets(kps, w, CROP_HW)
    ref_t, ref_w = gaussian_targets(np.nan_to_num(kps / 4), w, (16, 8))
    assert t.shape == (3, 17, 16, 8) and t.dtype == np.float32
    np.testing.assert_array_equal(t, ref_t)
    np.testing.assert_array_equal(tw, ref_w)
    assert (tw[np.isnan(kps).any(-1)] == 0).all()
    with pytest.raises(ValueError, match="multiple of the heatmap stride"):
        render_targets(kps, w, (62, 32))


def test_centre_frame_targets_identity_box_matches_plain_frame():
    # A GT box that is exactly the crop region's core (the crop = box ×1.25, aspect kept) gives the crop's own frame.
    h, w = CROP_HW
    _, kps, tw = _samples(2)
    core = np.array([w * 0.1, h * 0.1, w * 0.9, h * 0.9])  # ×1.25 about the centre = the whole crop
    ident = np.array([1, 0, 0, 0, 1, 0], dtype=np.float64)
    ct, cw = centre_frame_targets(kps, tw, np.stack([core, core]), np.stack([ident, ident]), CROP_HW)
    t, w_ = render_targets(kps, tw, CROP_HW)
    np.testing.assert_array_equal(cw, w_)
    np.testing.assert_allclose(ct, t, atol=1e-6)


def test_train_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_sppe("fastpose_res18")
    opt = build_optimizer(model, lr=1e-3)
    batch = _batch(4)
    losses = [train_step(model, opt, batch) for _ in range(5)]
    assert losses[-1] < 0.7 * losses[0], losses


def test_sstn_with_parallel_sppe_trains_and_exports_only_the_base_sppe(tmp_path):
    torch.manual_seed(0)
    parallel_state = build_sppe("fastpose_res18").state_dict()
    model = build_train_model("fastpose_res18", sstn=True, parallel_state=parallel_state)
    assert isinstance(model, SSTNPose)
    opt = build_optimizer(model)
    frozen = {k: v.clone() for k, v in model.parallel.state_dict().items()}
    crops, kps, w = _samples(4)
    boxes = np.tile([4.0, 8.0, 28.0, 56.0], (4, 1))
    m = np.tile([1.0, 0, 0, 0, 1.0, 0], (4, 1))
    batch = {
        k: torch.as_tensor(v) for k, v in prepare_batch(crops, kps, w, gt_boxes_xyxy=boxes, image_to_crop=m).items()
    }
    loss, parts = compute_loss(model, batch)
    assert set(parts) == {"heatmap", "parallel"}
    losses = [train_step(model, opt, batch) for _ in range(3)]
    assert losses[-1] < losses[0]
    for k, v in model.parallel.state_dict().items():  # frozen (paper: all layers, BN statistics included)
        torch.testing.assert_close(v, frozen[k], rtol=0, atol=0)
    state = export_state_dict(model)
    assert not any(k.startswith(("stn.", "parallel.", "sppe.", "module.")) for k in state)
    torch.save(state, tmp_path / "final.pth")
    load_checkpoint(build_sppe("fastpose_res18"), str(tmp_path / "final.pth"))  # strict


def test_bf16_autocast_step_runs_on_cpu_and_stays_close():
    torch.manual_seed(0)
    model = build_sppe("fastpose_res18").eval()
    batch = _batch(2)
    fp32, _ = compute_loss(model, batch)
    bf16, _ = compute_loss(model, batch, autocast_dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32
    assert abs(float(bf16) - float(fp32)) < 0.05 * float(fp32) + 1e-4


def test_learning_rate_is_alphapose_multisteplr_with_the_dpg_reset():
    # scripts/train.py: MultiStepLR([90, 120], 0.1) stepped per epoch; at the DPG milestone (140) reset, [20, 50].
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[90, 120], gamma=0.1)
    for e in range(140):
        assert learning_rate(e) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12), e
        opt.step()
        sched.step()
    assert learning_rate(140, dpg_from_epoch=140) == pytest.approx(1e-3)
    assert learning_rate(160, dpg_from_epoch=140) == pytest.approx(1e-4)
    assert learning_rate(190, dpg_from_epoch=140) == pytest.approx(1e-5)


def test_train_epoch_counts_samples_and_steps():
    torch.manual_seed(0)
    model = build_sppe("fastpose_res18")
    opt = build_optimizer(model)
    crops, kps, w = _samples(6)
    batches = [prepare_batch(crops[i : i + 4], kps[i : i + 4], w[i : i + 4]) for i in (0, 4)]
    stats = train_epoch(model, opt, batches)
    assert (stats.samples, stats.steps) == (6, 2) and np.isfinite(stats.loss)


# ---- DDP (gloo, CPU): 2 workers × half the batch == 1 worker × the whole batch -------------------------------------


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = build_sppe("fastpose_res18").eval()  # eval-mode BN: no batch-statistics dependence (notes §4)
        ddp = DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)  # SGD: Adam's first step ≈ lr·sign(g) amplifies rounding
        full = _batch(8)
        per = 8 // world
        train_step(ddp, opt, {k: v[rank * per : (rank + 1) * per] for k, v in full.items()})
        if rank == 0:
            torch.save(export_state_dict(ddp), out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_workers_equal_one_worker_on_the_same_global_batch(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "w2.pt")
    mp.spawn(_ddp_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    outs = {2: torch.load(out, weights_only=True)}
    # One worker = no DDP at all: the same step on the whole batch in this process.
    torch.manual_seed(0)
    model = build_sppe("fastpose_res18").eval()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), _batch(8))
    outs[1] = export_state_dict(model)
    moved = max(float((outs[1][k] - init[k]).abs().max()) for k in init if init[k].is_floating_point())
    diff = max(float((outs[1][k] - outs[2][k]).abs().max()) for k in init if init[k].is_floating_point())
    assert moved > 1e-4, "the step did not change the weights"
    assert diff < 1e-6, f"1 vs 2 workers differ by {diff} (update {moved})"
