"""FastPose networks and checkpoint loading.

The expected state-dict tables are written here from the keys and shapes that AlphaPose's own ``FastPose``
(ResNet-50) and ``FastPose_DUC`` (ResNet-152) modules produce at commit c60106d, the layout its official checkpoints
load into with ``strict=True`` (not from our model), so strict loading of a file shaped like an official checkpoint
tests the architecture against AlphaPose's.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.checkpoints import CheckpointError, inspect_state_dict, load_checkpoint, read_state_dict
from models.sppe import SPPE_ARCHS, build_sppe

REPO = Path(__file__).resolve().parents[2]


def _bn(prefix: str, c: int) -> dict[str, tuple]:
    return {
        f"{prefix}.weight": (c,),
        f"{prefix}.bias": (c,),
        f"{prefix}.running_mean": (c,),
        f"{prefix}.running_var": (c,),
        f"{prefix}.num_batches_tracked": (),
    }


def _se_resnet_table(blocks: tuple[int, int, int, int]) -> dict[str, tuple]:
    """AlphaPose's ``SEResnet`` template for ``preact.*``: SE and downsample only in block 0 of each stage."""
    t = {"preact.conv1.weight": (64, 3, 7, 7), **_bn("preact.bn1", 64)}
    for stage, (p, n, in0) in enumerate(zip((64, 128, 256, 512), blocks, (64, 256, 512, 1024)), start=1):
        for b in range(n):
            pre = f"preact.layer{stage}.{b}"
            cin = in0 if b == 0 else 4 * p
            t[f"{pre}.conv1.weight"] = (p, cin, 1, 1)
            t.update(_bn(f"{pre}.bn1", p))
            t[f"{pre}.conv2.weight"] = (p, p, 3, 3)
            t.update(_bn(f"{pre}.bn2", p))
            t[f"{pre}.conv3.weight"] = (4 * p, p, 1, 1)
            t.update(_bn(f"{pre}.bn3", 4 * p))
            if b == 0:
                t[f"{pre}.se.fc.0.weight"] = (4 * p, 4 * p)
                t[f"{pre}.se.fc.0.bias"] = (4 * p,)
                t[f"{pre}.se.fc.2.weight"] = (4 * p, 4 * p)
                t[f"{pre}.se.fc.2.bias"] = (4 * p,)
                t[f"{pre}.downsample.0.weight"] = (4 * p, in0, 1, 1)
                t.update(_bn(f"{pre}.downsample.1", 4 * p))
    return t


def fast_res50_table(k: int = 17) -> dict[str, tuple]:
    t = _se_resnet_table((3, 4, 6, 3))
    t["duc1.conv.weight"] = (1024, 512, 3, 3)
    t.update(_bn("duc1.bn", 1024))
    t["duc2.conv.weight"] = (512, 256, 3, 3)
    t.update(_bn("duc2.bn", 512))
    t["conv_out.weight"] = (k, 128, 3, 3)
    t["conv_out.bias"] = (k,)
    return t


def fast_duc_res152_table(k: int = 17) -> dict[str, tuple]:
    t = _se_resnet_table((3, 8, 36, 3))
    head = [
        ("duc1.1", (512, 512, 3, 3), "duc1.2", 512),
        ("duc1.4", (512, 512, 3, 3), "duc1.5", 512),
        ("duc1.7", (512, 512, 3, 3), "duc1.8", 512),
        ("duc1.10", (1024, 512, 3, 3), "duc1.11", 1024),
        ("duc2.1", (256, 256, 3, 3), "duc2.2", 256),
        ("duc2.4", (512, 256, 3, 3), "duc2.5", 512),
        ("duc3.1", (256, 128, 3, 3), "duc3.2", 256),
    ]
    for conv, shape, bn, c in head:
        t[f"{conv}.weight"] = shape
        t.update(_bn(bn, c))
    t["conv_out.weight"] = (k, 256, 3, 3)
    t["conv_out.bias"] = (k,)
    return t


def random_state_dict(table: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in table.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(1000, dtype=torch.int64)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g) * 0.01
    return out


@pytest.mark.parametrize(
    "arch, table, n_entries, n_nbt, n_params",
    [
        ("fastpose_res50", fast_res50_table, 348, 55, 40_577_745),
        ("fastpose_duc_res152", fast_duc_res152_table, 990, 162, 83_199_825),
    ],
)
def test_official_layout_loads_strictly(tmp_path, arch, table, n_entries, n_nbt, n_params):
    spec = table()
    assert len(spec) == n_entries and sum(k.endswith("num_batches_tracked") for k in spec) == n_nbt
    model = build_sppe(arch)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == spec  # every key and shape in the expected table, nothing more
    assert sum(p.numel() for p in model.parameters()) == n_params

    state = random_state_dict(spec, seed=7)
    path = tmp_path / f"{arch}.pth"
    torch.save(state, path)
    info = load_checkpoint(model, str(path))
    assert len(info.sha256) == 64 and info.num_tensors == n_entries
    loaded = model.state_dict()
    for k in ("preact.layer1.0.se.fc.0.weight", "conv_out.bias", "preact.layer4.2.bn3.running_var"):
        assert torch.equal(loaded[k], state[k])
    assert inspect_state_dict(state).arch == arch


def test_module_prefix_wrapper_and_legacy_format(tmp_path):
    model = build_sppe("fastpose_res18")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["conv_out.bias"] = torch.arange(17, dtype=torch.float32)
    # DataParallel prefix, wrapped under "state_dict", in the pre-1.6 (non-zip) serialisation of older releases.
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    path = tmp_path / "dp.pth"
    torch.save(wrapped, path, _use_new_zipfile_serialization=False)
    fresh = build_sppe("fastpose_res18")
    load_checkpoint(fresh, str(path))
    assert torch.equal(fresh.conv_out.bias, torch.arange(17, dtype=torch.float32))


def test_missing_num_batches_tracked_is_accepted(tmp_path):
    state = {k: v for k, v in build_sppe("fastpose_res18").state_dict().items() if "num_batches_tracked" not in k}
    torch.save(state, tmp_path / "old.pth")
    load_checkpoint(build_sppe("fastpose_res18"), str(tmp_path / "old.pth"))


def test_wrong_keypoint_count_is_named(tmp_path):
    torch.save(build_sppe("fastpose_res18", num_joints=26).state_dict(), tmp_path / "halpe.pth")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(build_sppe("fastpose_res18", num_joints=17), str(tmp_path / "halpe.pth"))
    msg = str(e.value)
    assert "halpe.pth" in msg and "predicts 26 keypoints" in msg and "built for 17" in msg
    assert "conv_out.weight (file (26, 128, 3, 3), model (17, 128, 3, 3))" in msg


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = build_sppe("fastpose_res18").state_dict()
    del state["preact.layer2.0.se.fc.0.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(build_sppe("fastpose_res18"), str(tmp_path / "bad.pth"))
    assert "missing keys (1): preact.layer2.0.se.fc.0.bias" in str(e.value)
    assert "unexpected keys (1): extra.weight" in str(e.value)


def test_wrong_architecture_is_refused(tmp_path):
    torch.save(build_sppe("fastpose_res18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match="does not fit FastPose"):
        load_checkpoint(build_sppe("fastpose_res34"), str(tmp_path / "r18.pth"))


def test_truncated_file_gives_clear_error(tmp_path):
    path = tmp_path / "full.pth"
    torch.save(build_sppe("fastpose_res18").state_dict(), path)
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth: truncated or corrupt checkpoint"):
        load_checkpoint(build_sppe("fastpose_res18"), str(tmp_path / "cut.pth"))
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_state_dict(str(tmp_path / "empty.pth"))
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(str(tmp_path / "nope.pth"))


class _Payload:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("zipped", [True, False])
def test_pickle_with_code_is_refused_and_not_executed(tmp_path, zipped):
    marker = tmp_path / "pwned"
    state = build_sppe("fastpose_res18").state_dict()
    state["evil"] = _Payload(str(marker))
    path = tmp_path / "evil.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(CheckpointError, match="refused to load.*not executed"):
        load_checkpoint(build_sppe("fastpose_res18"), str(path))
    assert not marker.exists()
    # A raw pickle stream (not a torch file at all) with the same payload is refused as well.
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(CheckpointError):
        read_state_dict(str(raw))
    assert not marker.exists()


def test_payload_fixture_is_live(tmp_path):
    """The malicious fixture above must really run code when loaded unsafely, or that test proves nothing."""
    marker = tmp_path / "live"
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Payload(str(marker))))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(raw)!r}, 'rb'))"], check=True)
    assert marker.exists()


def test_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(str(tmp_path / "list.pth"))


def test_build_sppe_unknown_arch_lists_choices():
    with pytest.raises(ValueError) as e:
        build_sppe("fastpose_res99")
    for name in SPPE_ARCHS:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="num_joints"):
        build_sppe("fastpose_res18", num_joints=0)


@pytest.mark.parametrize("arch", ["fastpose_res18", "fastpose_res34"])
def test_small_variants_shapes_and_se_placement(arch):
    model = build_sppe(arch, num_joints=14).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 256, 192))
    assert out.shape == (2, 14, 64, 48)
    se_blocks = sorted(name for name, _ in model.named_modules() if name.endswith(".se"))
    # Basic blocks: layer1 keeps 64 channels at stride 1 (no projection), so SE sits in layers 2-4 only.
    assert se_blocks == ["preact.layer2.0.se", "preact.layer3.0.se", "preact.layer4.0.se"]
    assert inspect_state_dict(model.state_dict()).arch == arch


def test_inspect_recognises_every_arch():
    for arch in SPPE_ARCHS:
        state = {k: torch.empty(v.shape) for k, v in build_sppe(arch, num_joints=26).state_dict().items()}
        info = inspect_state_dict(state)
        assert (info.arch, info.num_joints) == (arch, 26)


def test_models_package_never_imports_ray():
    code = (
        "import sys, pkgutil, importlib, models\n"
        "for m in pkgutil.iter_modules(models.__path__): importlib.import_module('models.' + m.name)\n"
        "assert 'ray' not in sys.modules, sorted(k for k in sys.modules if k.startswith('ray'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_fold_batchnorm_equals_the_network_and_leaves_it_untouched():
    from models.sppe import fold_batchnorm

    torch.manual_seed(0)
    net = build_sppe("fastpose_res18").eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 22  # the caller's network is intact
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    x = torch.rand(2, 3, 256, 192)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(build_sppe("fastpose_res18"))
    # inplace: the same folded network without the copy (the actor keeps only the folded one)
    with torch.inference_mode():
        expected = net(x)
    in_place = fold_batchnorm(net, inplace=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in in_place.modules())
    assert in_place.conv_out is net.conv_out  # no copy: the caller's modules were reused
    with torch.inference_mode():
        torch.testing.assert_close(in_place(x), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ["fastpose_res18", "hardnet68"])
def test_cast_for_inference_keeps_the_heatmap_layer_fp32(arch):
    from models.sppe import Float32Head, cast_for_inference, fold_batchnorm

    torch.manual_seed(0)
    net = build_sppe(arch, 17).eval()
    x = torch.rand(1, 3, 128, 96)  # small: bf16 is emulated (slow) on CPUs without native bf16
    with torch.inference_mode():
        ref = net(x)
        mixed = cast_for_inference(fold_batchnorm(net), torch.bfloat16)
        head_name = "conv_out" if arch.startswith("fastpose") else "conv_out.2"  # HarDNet: its last 1×1 conv
        head = mixed.get_submodule(head_name)
        assert isinstance(head, Float32Head)
        assert all(p.dtype == torch.float32 for p in head.parameters())
        trunk = [p for n, p in mixed.named_parameters() if not n.startswith(head_name + ".")]
        assert trunk and all(p.dtype == torch.bfloat16 for p in trunk)
        out = mixed(x.to(torch.bfloat16))
        plain = cast_for_inference(fold_batchnorm(net), torch.float32)
        assert not isinstance(plain.conv_out, Float32Head)  # fp32: nothing to keep
    assert out.dtype == torch.float32
    err = float((out - ref).norm() / ref.norm())
    assert 0 < err < 0.01, err  # bf16 trunk: not equal, but close (FastPose-res50: 0.04 %)
