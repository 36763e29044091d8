"""The SPPE actor called directly on hand-built frame batches (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actors.common import ragged
from actors.sppe import SPPE, SPPEConfig
from models.sppe import build_sppe


def _batch():
    rng = np.random.default_rng(0)
    crops = [
        rng.integers(0, 255, (2, 256, 192, 3), dtype=np.uint8),
        np.zeros((0, 256, 192, 3), np.uint8),
        np.zeros((0, 256, 192, 3), np.uint8),
        rng.integers(0, 255, (1, 256, 192, 3), dtype=np.uint8),
    ]
    boxes = [
        np.array([[0, 0, 96, 128], [10, 10, 58, 74]], float),
        np.zeros((0, 4)),
        np.zeros((0, 4)),
        np.array([[5, 5, 197, 261]], float),
    ]
    return {
        "video_id": np.array(["a", "a", "b", "c"], dtype=object),
        "frame_index": np.array([0, 1, -1, 0]),
        "crops": ragged(crops),
        "crop_boxes_xyxy": ragged(boxes),
        "error": np.array(["", "", "decode failed", ""], dtype=object),
    }


def test_sppe_actor_splits_persons_back_into_frames():
    actor = SPPE(SPPEConfig(arch="fastpose_res18", random_weights=True, batch_size=2, device="cpu"))
    batch = _batch()
    out = actor(batch)
    assert "crops" not in out and list(out["video_id"]) == ["a", "a", "b", "c"]
    assert [k.shape for k in out["keypoints"]] == [(2, 17, 2), (0, 17, 2), (0, 17, 2), (1, 17, 2)]
    assert [s.shape for s in out["keypoint_scores"]] == [(2, 17), (0, 17), (0, 17), (1, 17)]
    assert actor.sha256 == "random"
    # persons are independent of how they were pooled: one at a time gives the same numbers
    single = SPPE(SPPEConfig(arch="fastpose_res18", random_weights=True, batch_size=1, device="cpu"))
    kp, sc = single.estimate(batch["crops"][3], batch["crop_boxes_xyxy"][3])
    np.testing.assert_allclose(out["keypoints"][3], kp, atol=1e-3)
    # keypoints lie inside the crop box they were decoded through
    k = out["keypoints"][0]
    b = batch["crop_boxes_xyxy"][0]
    assert np.all((k[..., 0] >= b[:, None, 0] - 1e-3) & (k[..., 0] <= b[:, None, 2] + 1e-3))


def test_sppe_actor_loads_checkpoint_and_flip_test(tmp_path):
    torch.manual_seed(1)
    net = build_sppe("fastpose_res18")
    torch.save(net.state_dict(), tmp_path / "w.pth")
    actor = SPPE(SPPEConfig(arch="fastpose_res18", checkpoint=str(tmp_path / "w.pth"), flip_test=True, device="cpu"))
    assert len(actor.sha256) == 64
    assert torch.equal(actor.model.conv_out.bias, net.conv_out.bias)
    out = actor(_batch())
    assert out["keypoints"][0].shape == (2, 17, 2)


def test_sppe_config_validation():
    with pytest.raises(ValueError, match="sppe.checkpoint is not set"):
        SPPEConfig()
    with pytest.raises(ValueError, match="unknown 'resnet50'"):
        SPPEConfig(arch="resnet50", random_weights=True)
    with pytest.raises(ValueError, match="halpe26 has 26 keypoints"):
        SPPEConfig(keypoint_set="halpe26", random_weights=True)
    with pytest.raises(ValueError, match="decode"):
        SPPEConfig(decode="soft", random_weights=True)


def test_pose_arch_validation_and_crop_specs(monkeypatch, tmp_path):
    from models.blazepose import BLAZEPOSE_CROP
    from models.transforms import ALPHAPOSE_CROP
    from models.zoo import WeightsMissingError

    assert SPPEConfig(arch="fastpose_res18", random_weights=True).crop == ALPHAPOSE_CROP
    assert SPPEConfig(arch="blazepose_full").crop == BLAZEPOSE_CROP
    assert SPPEConfig(arch="detector").crop is None
    with pytest.raises(ValueError, match="coco17, halpe26"):
        SPPEConfig(arch="blazepose_full", keypoint_set="crowdpose14", num_joints=14)
    with pytest.raises(ValueError, match="no random-weights mode"):
        SPPEConfig(arch="blazepose_full", random_weights=True)
    with pytest.raises(ValueError, match="precision"):
        SPPEConfig(arch="blazepose_full", precision="int8")
    with pytest.raises(ValueError, match="int8 is for fastpose_res18"):
        SPPEConfig(arch="hrnet_w32", random_weights=True, precision="int8")
    monkeypatch.setenv("RAYPOSE_WEIGHTS_DIR", str(tmp_path))  # an empty weights folder
    with pytest.raises(WeightsMissingError, match="make weights"):
        SPPE(SPPEConfig(arch="blazepose_full", device="cpu"))
    with pytest.raises(ValueError, match="no pose stage"):
        SPPE(SPPEConfig(arch="detector", device="cpu"))


def test_sppe_actor_bf16_matches_fp32():
    """``precision=bf16`` runs the heatmap network in bfloat16 and decodes in float32 (random weights: argmaxes of
    near-flat heatmaps may move, so only shapes, dtype and finiteness are compared)."""
    fp32 = SPPE(SPPEConfig(arch="fastpose_res18", random_weights=True, device="cpu"))
    bf16 = SPPE(SPPEConfig(arch="fastpose_res18", random_weights=True, device="cpu", precision="bf16"))
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    a, b = fp32(_batch()), bf16(_batch())
    assert b["keypoints"][0].dtype == np.float32 and np.isfinite(b["keypoints"][0]).all()
    assert a["keypoints"][0].shape == b["keypoints"][0].shape


def test_sppe_actor_resolves_auto_precision_by_the_cpu(monkeypatch):
    """``precision=auto`` (the default) is bf16 on a CPU with native bf16 (heatmap layer fp32) and fp32 elsewhere;
    an actor handed an unresolved config resolves it itself (``RAYPOSE_CPU_BF16`` stands in for the CPU flags)."""
    from actors.sppe import inference_form
    from models.sppe import Float32Head

    assert SPPEConfig(arch="fastpose_res18", random_weights=True).precision == "auto"
    monkeypatch.setenv("RAYPOSE_CPU_BF16", "1")
    fast = SPPE(SPPEConfig(arch="fastpose_res18", random_weights=True, device="cpu"))
    assert fast.cfg.precision == "bf16" and fast.dtype == torch.bfloat16
    assert isinstance(fast.model.conv_out, Float32Head)
    assert inference_form(fast.cfg)["heatmap_layer"] == "fp32"
    out = fast(_batch())
    assert out["keypoints"][0].dtype == np.float32 and np.isfinite(out["keypoints"][0]).all()
    monkeypatch.setenv("RAYPOSE_CPU_BF16", "0")
    exact = SPPE(SPPEConfig(arch="fastpose_res18", random_weights=True, device="cpu"))
    assert exact.cfg.precision == "fp32" and all(p.dtype == torch.float32 for p in exact.model.parameters())
    assert "heatmap_layer" not in inference_form(exact.cfg)


def test_sppe_actor_runs_folded_channels_last_and_matches_the_checkpoint_network(tmp_path):
    """The actor folds batch norm into the convolutions and runs channels-last (faster on CPU); its heatmaps must
    equal the plain NCHW network with the same checkpoint, batch-norm statistics included, up to rounding."""
    from models.transforms import normalize_crops

    torch.manual_seed(2)
    net = build_sppe("fastpose_res18").eval()
    for m in net.modules():  # statistics far from the defaults (0, 1), or folding them would go untested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    actor = SPPE(SPPEConfig(arch="fastpose_res18", checkpoint=str(tmp_path / "w.pth"), device="cpu"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in actor.model.modules())
    convs = [m for m in actor.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    x = normalize_crops(np.random.default_rng(3).integers(0, 255, (3, 256, 192, 3), dtype=np.uint8))
    with torch.inference_mode():
        got, want = actor.model(x), net(x.contiguous())
    assert not got.is_contiguous() and want.is_contiguous()  # the two layouts really differed
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_sppe_actor_int8_runs_a_quantized_network_on_cpu_only():
    from torch.ao.nn import quantized as nnq

    from actors.sppe import inference_form
    from models.quantize import int8_supported

    if not int8_supported():
        pytest.skip("this PyTorch build has no x86 quantized engine")
    cfg = SPPEConfig(arch="fastpose_res18", random_weights=True, device="cpu", precision="int8")
    actor = SPPE(cfg)
    assert any(isinstance(m, nnq.Conv2d) for m in actor.model.modules())
    out = actor(_batch())
    assert out["keypoints"][0].dtype == np.float32 and np.isfinite(out["keypoints"][0]).all()
    assert inference_form(cfg)["precision"] == "int8" and "calibrated" in inference_form(cfg)["quantization"]
    with pytest.raises(ValueError, match="int8 runs on the CPU"):
        SPPEConfig(arch="fastpose_res18", random_weights=True, device="cuda", precision="int8")
    with pytest.raises(ValueError, match="int8 is for fastpose_res18"):
        SPPEConfig(arch="blazepose_full", precision="int8")
    with pytest.raises(ValueError, match="int8 is for fastpose_res18"):
        SPPEConfig(arch="hrnet_w32", random_weights=True, precision="int8")


def test_sppe_actor_streams_give_the_outputs_of_one_stream():
    """Two concurrent forwards (``resources.sppe.streams``) run the same chunks as one: same keypoints, scores and
    joint candidates, in the same order (fp32; one torch thread per stream vs two for the single stream)."""
    from models.crowdpose import ALPHAPOSE_CANDIDATES

    rng = np.random.default_rng(3)
    crops = rng.integers(0, 255, (11, 256, 192, 3), dtype=np.uint8)  # 3 chunks of 4, the last one short
    boxes = np.concatenate([rng.uniform(0, 100, (11, 2)), rng.uniform(150, 300, (11, 2))], axis=1)
    cfg = SPPEConfig(arch="fastpose_res18", random_weights=True, batch_size=4, device="cpu", precision="fp32")
    one = SPPE(cfg, threads=2, candidates=ALPHAPOSE_CANDIDATES)
    two = SPPE(cfg, threads=2, candidates=ALPHAPOSE_CANDIDATES, streams=2)
    assert (one.streams.streams, one.streams.threads_per_stream) == (1, 2)
    assert (two.streams.streams, two.streams.threads_per_stream) == (2, 1)
    kp1, sc1, c1 = one.estimate_with_candidates(crops, boxes)
    kp2, sc2, c2 = two.estimate_with_candidates(crops, boxes)
    np.testing.assert_allclose(kp2, kp1, atol=1e-3)
    np.testing.assert_allclose(sc2, sc1, atol=1e-5)
    np.testing.assert_array_equal(c2.count, c1.count)
    np.testing.assert_allclose(c2.xy, c1.xy, atol=1e-3)
    # persons of each chunk stay in their places: a reversed input gives reversed outputs
    kp3, _ = two.estimate(crops[::-1], boxes[::-1])
    np.testing.assert_allclose(kp3[::-1], kp1, atol=1e-3)
    with pytest.raises(ValueError, match="streams must be between 1 and its threads"):
        SPPE(cfg, threads=2, streams=3)


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))],
)
def test_sppe_actor_candidates_on_the_device_equal_the_numpy_ones(device):
    """On a GPU the actor searches the peaks there (``joint_candidates_torch``); the candidates are those of the
    NumPy search (``joint_candidates``, the CPU path) on the same heatmaps, bit for bit. On the CPU the switch is
    forced, so the wiring (flip-tested float heatmaps, crop boxes, input size, params) is tested without a GPU."""
    from models.crowdpose import ALPHAPOSE_CANDIDATES

    rng = np.random.default_rng(5)
    crops = rng.integers(0, 255, (5, 256, 192, 3), dtype=np.uint8)
    boxes = np.concatenate([rng.uniform(0, 100, (5, 2)), rng.uniform(150, 300, (5, 2))], axis=1)
    cfg = SPPEConfig(arch="fastpose_res18", random_weights=True, batch_size=2, device=device, precision="fp32")
    sppe = SPPE(cfg, candidates=ALPHAPOSE_CANDIDATES)
    assert sppe.candidates_on_device == (device != "cpu")
    results = {}
    for on_device in (False, True):
        sppe.candidates_on_device = on_device
        results[on_device] = sppe.estimate_with_candidates(crops, boxes)
    (kp_np, sc_np, c_np), (kp_t, sc_t, c_t) = results[False], results[True]
    np.testing.assert_array_equal(kp_t, kp_np)
    np.testing.assert_array_equal(sc_t, sc_np)
    for field in ("xy", "scores", "valid", "count"):
        np.testing.assert_array_equal(getattr(c_t, field), getattr(c_np, field), err_msg=field)
    assert c_np.count.shape == (5, cfg.num_joints) and (c_np.count >= 1).all()
