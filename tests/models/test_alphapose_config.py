"""AlphaPose YAML configs → raypose networks (``models.alphapose_config``).

The ``MODEL`` / ``DATA_PRESET`` / ``LOSS`` sections below are those of AlphaPose's own config files (``configs/...``
at c60106d), trimmed to the keys its builders read.
"""

from __future__ import annotations

import textwrap

import pytest
import torch
import yaml

from models.alphapose_config import AlphaPoseConfigError, build_from_alphapose_config, read_alphapose_config


def _cfg(model: str, joints: int = 17, loss: str = "TYPE: 'MSELoss'", dataset: str = "Mscoco") -> dict:
    text = f"""
DATASET:
  TRAIN:
    TYPE: '{dataset}'
DATA_PRESET:
  TYPE: 'simple'
  NUM_JOINTS: {joints}
  IMAGE_SIZE: [256, 192]
  HEATMAP_SIZE: [64, 48]
MODEL:
{textwrap.indent(textwrap.dedent(model).strip(), "  ")}
LOSS:
{textwrap.indent(textwrap.dedent(loss).strip(), "  ")}
"""
    return yaml.safe_load(text)


FASTPOSE_50 = "TYPE: 'FastPose'\nNUM_LAYERS: 50"  # configs/coco/resnet/256x192_res50_lr1e-3_1x.yaml
# configs/halpe_136/resnet/256x192_res50_lr1e-3_2x-dcn-combined.yaml
FASTPOSE_DCN_256 = """
TYPE: 'FastPose'
CONV_DIM: 256
NUM_LAYERS: 50
DCN: {MODULATED: false, DEFORM_GROUP: 1, FALLBACK_ON_STRIDE: false}
STAGE_WITH_DCN: [false, true, true, true]
"""
COMBINED = "TYPE: 'Combined'\nNORM_TYPE: 'sigmoid'"
REGRESSION = "TYPE: 'L1JointRegression'\nNORM_TYPE: 'sigmoid'"
# configs/halpe_136/resnet/256x192_res152_lr1e-3_1x-duc.yaml: TYPE FastPose despite its name and DUC keys
HALPE_RES152_DUC = """
TYPE: 'FastPose'
BACKBONE: 'se-resnet'
CONV_DIM: 256
NUM_LAYERS: 152
STAGE1: {NUM_CONV: 4}
STAGE2: {NUM_CONV: 2}
STAGE3: {NUM_CONV: 1}
"""
DUC_152 = """
TYPE: 'FastPose_DUC'
BACKBONE: 'se-resnet'
NUM_LAYERS: 152
STAGE1: {NUM_CONV: 4}
STAGE2: {NUM_CONV: 2}
STAGE3: {NUM_CONV: 1}
"""


@pytest.mark.parametrize(
    "model, joints, loss, want",
    [
        (FASTPOSE_50, 17, "TYPE: 'MSELoss'", ("fastpose_res50", "coco17", "alphapose", None)),
        (FASTPOSE_50, 26, "TYPE: 'MSELoss'", ("fastpose_res50", "halpe26", "alphapose", 128)),
        (FASTPOSE_50, 17, REGRESSION, ("fastpose_res50", "coco17", "integral", 128)),
        (FASTPOSE_DCN_256, 136, COMBINED, ("fastpose_dcn_res50", "halpe136", "combined", 256)),
        (FASTPOSE_DCN_256, 133, REGRESSION, ("fastpose_dcn_res50", "coco_wholebody133", "integral", 256)),
        (FASTPOSE_DCN_256, 68, COMBINED, ("fastpose_dcn_res50", "halpe68", "combined", 256)),
        (FASTPOSE_DCN_256, 21, REGRESSION, ("fastpose_dcn_res50", "hand21", "integral", 256)),
        (HALPE_RES152_DUC, 136, "TYPE: 'MSELoss'", ("fastpose_res152", "halpe136", "alphapose", 256)),
        (DUC_152, 17, "TYPE: 'MSELoss'", ("fastpose_duc_res152", "coco17", "alphapose", None)),
        (
            "TYPE: 'FastPose_DUC'\nBACKBONE: 'shuffle'\nNUM_LAYERS: 50\nSTAGE1: {NUM_CONV: 4}\n"
            "STAGE2: {NUM_CONV: 2}\nSTAGE3: {NUM_CONV: 1}",
            17,
            "TYPE: 'MSELoss'",
            ("fastpose_duc_res50_shuffle", "coco17", "alphapose", None),
        ),
        (
            "TYPE: 'SimplePose'\nNUM_LAYERS: 50",
            17,
            "TYPE: 'MSELoss'",
            ("simplepose_res50", "coco17", "alphapose", None),
        ),
        (
            "TYPE: 'PoseHighResolutionNet'\nSTAGE4: {NUM_CHANNELS: [32, 64, 128, 256]}",
            17,
            "TYPE: 'MSELoss'",
            ("hrnet_w32", "coco17", "alphapose", None),
        ),
        ("TYPE: 'HarDNetPose'\nNUM_LAYERS: 68", 136, "TYPE: 'MSELoss'", ("hardnet68", "halpe136", "alphapose", None)),
        ("TYPE: 'HarDNetPose'\nNUM_LAYERS: 85", 17, "TYPE: 'MSELoss'", ("hardnet85", "coco17", "alphapose", None)),
    ],
)
def test_what_each_config_builds(model, joints, loss, want):
    spec = read_alphapose_config(_cfg(model, joints, loss))
    arch, keypoint_set, decode, conv_dim = want
    assert (spec.arch, spec.num_joints, spec.keypoint_set, spec.decode) == (arch, joints, keypoint_set, decode)
    if conv_dim is not None:
        assert spec.conv_dim == conv_dim
    assert spec.regression_pose_nms == (joints in (133, 136) and "MSELoss" not in loss)


def test_the_network_has_alphaposes_keys_and_loads_its_checkpoint_strictly(tmp_path):
    """FastPose res152 with CONV_DIM 256 and 136 joints (the Halpe-136 "res152 duc" config): the keys of spec
    §3.7 with n = 3, 8, 36, 3 and the CONV_DIM-256 head of §3.9."""
    from models.checkpoints import load_checkpoint

    path = tmp_path / "halpe136_res152.yaml"
    path.write_text(yaml.safe_dump(_cfg(HALPE_RES152_DUC, 136, dataset="Halpe_136")))
    net, spec = build_from_alphapose_config(str(path))
    sd = net.state_dict()
    assert sd["duc2.conv.weight"].shape == (1024, 256, 3, 3) and sd["conv_out.weight"].shape == (136, 256, 3, 3)
    assert sum(1 for k in sd if k.startswith("preact.layer3.") and k.endswith(".conv2.weight")) == 36
    assert spec.source == str(path)
    torch.manual_seed(0)
    seeded = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in sd.items()}
    torch.save(seeded, tmp_path / "w.pth")
    load_checkpoint(net, str(tmp_path / "w.pth"))
    assert torch.equal(net.state_dict()["conv_out.bias"], seeded["conv_out.bias"])
    # the COCO res50 FastPose checkpoint for this config fails, naming keys
    other, _ = build_from_alphapose_config(_cfg(FASTPOSE_50))
    torch.save(other.state_dict(), tmp_path / "res50.pth")
    with pytest.raises(Exception, match=r"layer3\.\d+|conv_out|duc2"):
        load_checkpoint(net, str(tmp_path / "res50.pth"))


@pytest.mark.parametrize(
    "model, joints, loss, message",
    [
        ("TYPE: 'FastPose'\nNUM_LAYERS: 50", 33, "TYPE: 'MSELoss'", "NUM_JOINTS=33"),
        ("TYPE: 'FastPose'\nNUM_LAYERS: 50", 17, COMBINED, "Combined with 17 joints"),
        ("TYPE: 'FastPose'\nNUM_LAYERS: 50", 17, "TYPE: 'L1JointRegression'\nNORM_TYPE: 'softmax'", "NORM_TYPE"),
        ("TYPE: 'FastPose'\nNUM_LAYERS: 50", 17, "TYPE: 'MyLoss'", "LOSS.TYPE='MyLoss'"),
        ("TYPE: 'Simple3DPoseBaseSMPLCam'", 17, "TYPE: 'MSELoss'", "not one of AlphaPose's 2D models"),
        ("TYPE: 'FastPose'\nNUM_LAYERS: 50\nCONV_DIM: 64", 17, "TYPE: 'MSELoss'", "CONV_DIM=64"),
        ("TYPE: 'HarDNetPose'\nNUM_LAYERS: 39", 17, "TYPE: 'MSELoss'", "NUM_LAYERS=39"),
        (
            "TYPE: 'PoseHighResolutionNet'\nSTAGE4: {NUM_CHANNELS: [48, 96, 192, 384]}",
            17,
            "TYPE: 'MSELoss'",
            "raypose builds W32",
        ),
    ],
)
def test_configs_raypose_does_not_build_are_refused_by_name(model, joints, loss, message):
    with pytest.raises(AlphaPoseConfigError, match=message):
        read_alphapose_config(_cfg(model, joints, loss))


def test_missing_and_invalid_files_are_named(tmp_path):
    with pytest.raises(AlphaPoseConfigError, match="nope.yaml: AlphaPose config not found"):
        read_alphapose_config(str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(AlphaPoseConfigError, match="bad.yaml: an AlphaPose config is a YAML mapping"):
        read_alphapose_config(str(tmp_path / "bad.yaml"))
    crop = _cfg(FASTPOSE_50)
    crop["DATA_PRESET"]["IMAGE_SIZE"] = [224, 224]
    with pytest.raises(AlphaPoseConfigError, match=r"IMAGE_SIZE=\[224, 224\]"):
        read_alphapose_config(crop)
