"""SSTN and parallel SPPE (``models.sstn``): identity start, warp/unwarp consistency, gradients through the inverse
θ, the AlphaPose-keyed base state dict, the frozen parallel branch and centre-located labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.heatmaps import decode_heatmaps
from models.sppe import FastPose, build_sppe
from models.sstn import IDENTITY_THETA, LocalisationNet, SSTNPose, centre_targets, invert_theta, sdtn, stn_warp
from models.targets import gaussian_targets
from models.transforms import ALPHAPOSE_CROP, CropSpec, image_to_heatmap_coords


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: one intra-op thread is as fast, and on a shared, loaded CPU two OpenMP threads that
    spin-wait for each other make a ResNet-18 forward ~50× slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _theta(scale=0.8, rot_deg=12.0, tx=0.05, ty=-0.08, shear=0.03, dtype=torch.float64) -> torch.Tensor:
    r = math.radians(rot_deg)
    a = scale * torch.tensor([[math.cos(r), -math.sin(r) + shear], [math.sin(r), math.cos(r)]], dtype=dtype)
    return torch.cat([a, torch.tensor([[tx], [ty]], dtype=dtype)], dim=1)[None]


def _smooth(h: int, w: int, dtype=torch.float64) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, dtype=dtype), torch.linspace(-1, 1, w, dtype=dtype), indexing="ij")
    return (torch.sin(2.1 * xx + 0.4) * torch.cos(1.7 * yy) + 0.3 * xx * yy)[None, None]


def test_localisation_net_starts_at_identity():
    net = LocalisationNet()
    assert net.fc.weight.abs().sum() == 0
    x = torch.randn(2, 3, 64, 48)
    for mode in (True, False):
        net.train(mode)
        theta = net(x)
        assert theta.shape == (2, 2, 3)
        torch.testing.assert_close(theta, torch.tensor(IDENTITY_THETA).view(1, 2, 3).expand(2, 2, 3))
    # ResNet-18 trunk: BasicBlock layout 2-2-2-2, 512 features, no SE
    assert net.fc.in_features == 512 and len(net.trunk.layer4) == 2 and net.trunk.layer2[0].se is None


def test_identity_warp_is_the_input():
    x = torch.randn(2, 3, 32, 24)
    theta = torch.tensor(IDENTITY_THETA).view(1, 2, 3).repeat(2, 1, 1)
    torch.testing.assert_close(stn_warp(x, theta), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(sdtn(x, theta), x, atol=1e-5, rtol=0)


def test_warp_follows_the_source_from_target_convention():
    """``out[p] = in[θp]``: θ = [[0.5, 0, 0.5], [0, 0.5, 0]] shows the right half of the image, magnified ×2."""
    x = _smooth(32, 32)
    theta = torch.tensor([[[0.5, 0.0, 0.5], [0.0, 0.5, 0.0]]], dtype=torch.float64)
    out = stn_warp(x, theta)
    # output column j (normalised u) samples source u' = 0.5u + 0.5: output's left edge = source centre column
    centre_column = (x[0, 0, 12:20, 15] + x[0, 0, 12:20, 16]) / 2
    torch.testing.assert_close(out[0, 0, 8:24, 0], centre_column.repeat_interleave(2), atol=0.05, rtol=0)
    assert stn_warp(x, theta, out_hw=(8, 6)).shape == (1, 1, 8, 6)


def test_invert_theta_is_an_involution_and_an_inverse():
    theta = _theta()
    gamma = invert_theta(theta)
    torch.testing.assert_close(invert_theta(gamma), theta, atol=1e-12, rtol=0)

    def full(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t[0], torch.tensor([[0.0, 0.0, 1.0]], dtype=t.dtype)])

    torch.testing.assert_close(full(gamma) @ full(theta), torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    batch = torch.cat([theta, _theta(1.2, -30, 0.1, 0.2, -0.05)])
    torch.testing.assert_close(invert_theta(invert_theta(batch)), batch, atol=1e-12, rtol=0)


def test_sdtn_undoes_the_warp_away_from_the_borders():
    x = _smooth(96, 72)
    theta = _theta()
    back = sdtn(stn_warp(x, theta), theta)
    inner = (slice(None), slice(None), slice(24, 72), slice(18, 54))
    err = (back - x)[inner].abs().max().item()
    assert err < 5e-3, err
    # and in the other order: warping the de-transformed map gives the map back
    err2 = (stn_warp(sdtn(x, theta), theta) - x)[inner].abs().max().item()
    assert err2 < 5e-3, err2


def test_sdtn_moves_a_heatmap_peak_back_to_the_proposal_frame():
    """A peak at heatmap pixel q in the proposal frame appears (in the warped crop) where θ sends it, and sdtn
    returns it to q; decoded within the ±0.25 px refinement plus the 1.5-input-px convention offset."""
    theta = _theta(0.85, 8.0, 0.06, -0.04, 0.0)
    q = torch.tensor([[20.0, 30.0]], dtype=torch.float64)
    ys, xs = torch.arange(64.0, dtype=torch.float64), torch.arange(48.0, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    hm = torch.exp(-((xx - q[0, 0]) ** 2 + (yy - q[0, 1]) ** 2) / 8)[None, None]
    warped = stn_warp(hm, theta)
    back = sdtn(warped, theta)
    coords, _ = decode_heatmaps(back.float())
    assert (coords[0, 0] - q[0].float()).abs().max() <= 0.25 + 0.1
    # the warped peak is at θ⁻¹ applied to q in normalised coordinates
    u = torch.tensor([(2 * q[0, 0] + 1) / 48 - 1, (2 * q[0, 1] + 1) / 64 - 1, 1.0], dtype=torch.float64)
    v = invert_theta(theta)[0] @ u
    expect = torch.stack([((v[0] + 1) * 48 - 1) / 2, ((v[1] + 1) * 64 - 1) / 2])
    coords_w, _ = decode_heatmaps(warped.float())
    assert (coords_w[0, 0].double() - expect).abs().max() <= 0.75


def test_gradients_reach_theta_through_the_inverse():
    torch.manual_seed(0)
    h = torch.randn(1, 2, 7, 6, dtype=torch.float64)
    theta = (_theta(0.9, 10.0, 0.03, -0.02, 0.05) + 0.01 * torch.randn(1, 2, 3, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: sdtn(h, t), (theta,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(invert_theta, (theta,), eps=1e-6, atol=1e-7)
    sdtn(h, theta).square().sum().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0


def test_base_state_dict_is_alphapose_keyed_and_loads_strictly():
    model = SSTNPose(build_sppe("fastpose_res18"))
    state = model.base_state_dict()
    assert list(state) == list(build_sppe("fastpose_res18").state_dict())
    assert not any(k.startswith(("stn.", "sppe.", "parallel.")) for k in state)
    fresh = build_sppe("fastpose_res18")
    assert isinstance(fresh, FastPose)
    fresh.load_state_dict(state, strict=True)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_identity_start_gives_the_plain_sppe_output():
    torch.manual_seed(1)
    sppe = build_sppe("fastpose_res18").eval()
    model = SSTNPose(sppe).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        ref = sppe(x)
    assert out["parallel"] is None and out["heatmaps"].shape == (1, 17, 16, 16)
    torch.testing.assert_close(out["heatmaps"], ref, atol=1e-4, rtol=1e-4)


def test_parallel_branch_is_frozen_and_still_trains_the_stn():
    torch.manual_seed(2)
    parallel = build_sppe("fastpose_res18")
    model = SSTNPose(build_sppe("fastpose_res18"), parallel).train()
    assert all(not p.requires_grad for p in model.parallel.parameters())
    assert not model.parallel.training and model.sppe.training and model.stn.training
    bn = model.parallel.preact.bn1
    stats = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    with torch.no_grad():  # move θ off the identity so the trunk is in the graph too
        model.stn.fc.weight.normal_(0, 1e-3)
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out["parallel"].shape == (2, 17, 16, 16)
    out["parallel"].square().mean().backward(retain_graph=True)  # the parallel loss alone
    assert all(p.grad is None for p in model.parallel.parameters())
    assert all(p.grad is None for p in model.sppe.parameters())
    assert model.stn.fc.weight.grad.abs().sum() > 0 and model.stn.trunk.conv1.weight.grad.abs().sum() > 0
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert int(bn.num_batches_tracked) == stats[2]
    out["heatmaps"].square().mean().backward()  # the main loss reaches the base SPPE, never the parallel branch
    assert all(p.grad is None for p in model.parallel.parameters())
    assert all(p.grad is not None for p in model.sppe.parameters())
    assert model.sppe.conv_out.weight.grad.abs().sum() > 0


def test_lua_style_freeze_keeps_batchnorm_trainable():
    model = SSTNPose(build_sppe("fastpose_res18"), build_sppe("fastpose_res18"), parallel_freeze="conv").train()
    par = model.parallel
    assert not par.preact.conv1.weight.requires_grad and not par.conv_out.weight.requires_grad
    assert not par.conv_out.bias.requires_grad
    assert par.preact.bn1.weight.requires_grad and par.training
    with pytest.raises(ValueError):
        SSTNPose(build_sppe("fastpose_res18"), parallel_freeze="none")


def test_centre_targets_are_the_gt_pose_in_its_box_frame():
    rng = np.random.default_rng(4)
    boxes = np.array([[100.0, 50.0, 200.0, 350.0], [40.0, 60.0, 300.0, 200.0]])
    kps = np.stack([rng.uniform(b[:2], b[2:], size=(17, 2)) for b in boxes])
    vis = rng.random((2, 17)) > 0.2
    target, weight = centre_targets(kps, vis, boxes)
    assert target.shape == (2, 17, 64, 48) and weight.shape == (2, 17)
    hm = image_to_heatmap_coords(kps, ALPHAPOSE_CROP.crop_boxes(boxes))
    ref_t, ref_w = gaussian_targets(hm, vis)
    assert np.array_equal(target, ref_t) and np.array_equal(weight, ref_w)
    # box (100, 50, 200, 350) → crop region (9.375, 12.5, 290.625, 387.5): the box centre is the heatmap centre
    # (24, 32); the box's top-left corner is at ((100 − 9.375)·48/281.25, (50 − 12.5)·64/375) = (15.47, 6.4)
    t, w = centre_targets(np.array([[[150.0, 200.0], [100.0, 50.0]]]), np.ones((1, 2)), boxes[:1])
    assert t[0, 0, 32, 24] == 1.0 and t[0, 1, 6, 15] == 1.0 and w.tolist() == [[1.0, 1.0]]
    # the bare aspect-fixed box (37.5, 50, 262.5, 350): the corner is at ((100 − 37.5)·48/225, 0) = (13.33, 0)
    t2, _ = centre_targets(np.array([[[100.0, 50.0]]]), np.ones((1, 1)), boxes[:1], crop=CropSpec(scale_mult=1.0))
    assert t2[0, 0, 0, 13] == 1.0
