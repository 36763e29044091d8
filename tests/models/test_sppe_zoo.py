"""The AlphaPose zoo beyond FastPose-res50: SimplePose, FastPose_DUC on the shuffle backbone, FastPose with DCN.

Every expected state-dict table is written here from AlphaPose's source at commit c60106d (the module trees of
``alphapose/models/simplepose.py``, ``fastpose_duc.py`` + ``layers/ShuffleResnet.py``, ``fastpose.py`` +
``layers/SE_Resnet.py`` with the 2x-dcn config), as templates over stages and blocks like the spec's §3.7, never from
our model's ``state_dict()``; the parameter counts are sums over those tables, hard-coded so a table error shows too.
The deformable-convolution tests pin the offset layout AlphaPose's CUDA kernel uses: channel ``2·(i·kw+j)`` is the
row offset and ``2·(i·kw+j)+1`` the column offset of kernel tap (i, j).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.checkpoints import CheckpointError, load_state_dict_strict
from models.sppe import Bottleneck, DeformConv, build_sppe, fold_batchnorm

STAGES = ((1, 64, 64), (2, 128, 256), (3, 256, 512), (4, 512, 1024))  # (stage, planes p, in-channels of block 0)
RES50 = (3, 4, 6, 3)


def _bn(prefix: str, c: int) -> dict[str, tuple]:
    return {f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()
    }


def resnet50_table(*, se: bool, shuffle: bool = False, dcn_stages: tuple[int, ...] = ()) -> dict[str, tuple]:
    """``preact.*`` of AlphaPose's ResNet-50 trunks.

    se: SEResnet/ShuffleResnet (SE in block 0 of each stage) versus plain ``layers/Resnet.py``.
    shuffle: ShuffleResnet: the stride-2 block 0 of stages 2-4 has ``conv2 = Sequential(PixelUnshuffle(2),
        Conv2d(4p, p, 3))``, so its key is ``conv2.1.weight`` (p, 4p, 3, 3).
    dcn_stages: stages whose every block has ``conv2_offset`` (18, p, 3, 3) + bias (18) (SE_Resnet passes dcn to all).
    """
    t = {"preact.conv1.weight": (64, 3, 7, 7), **_bn("preact.bn1", 64)}
    for (stage, p, in0), n in zip(STAGES, RES50):
        for b in range(n):
            pre = f"preact.layer{stage}.{b}"
            t[f"{pre}.conv1.weight"] = (p, in0 if b == 0 else 4 * p, 1, 1)
            t.update(_bn(f"{pre}.bn1", p))
            if stage in dcn_stages:
                t[f"{pre}.conv2_offset.weight"] = (18, p, 3, 3)
                t[f"{pre}.conv2_offset.bias"] = (18,)
            if shuffle and b == 0 and stage > 1:
                t[f"{pre}.conv2.1.weight"] = (p, 4 * p, 3, 3)
            else:
                t[f"{pre}.conv2.weight"] = (p, p, 3, 3)
            t.update(_bn(f"{pre}.bn2", p))
            t[f"{pre}.conv3.weight"] = (4 * p, p, 1, 1)
            t.update(_bn(f"{pre}.bn3", 4 * p))
            if b == 0:
                if se:
                    for fc in ("fc.0", "fc.2"):
                        t[f"{pre}.se.{fc}.weight"] = (4 * p, 4 * p)
                        t[f"{pre}.se.{fc}.bias"] = (4 * p,)
                t[f"{pre}.downsample.0.weight"] = (4 * p, in0, 1, 1)
                t.update(_bn(f"{pre}.downsample.1", 4 * p))
    return t


def simplepose_table(k: int = 17) -> dict[str, tuple]:
    """simplepose.py: ``deconv_layers`` = Sequential(ConvT(2048,256,4), BN, ReLU, ConvT(256,256,4), BN, ReLU, ×3);
    ConvTranspose2d weights are (in, out, kh, kw); ``final_layer`` = Conv2d(256, K, 1) with bias."""
    t = resnet50_table(se=False)
    for idx, cin in ((0, 2048), (3, 256), (6, 256)):
        t[f"deconv_layers.{idx}.weight"] = (cin, 256, 4, 4)
        t.update(_bn(f"deconv_layers.{idx + 1}", 256))
    t["final_layer.weight"] = (k, 256, 1, 1)
    t["final_layer.bias"] = (k,)
    return t


def _duc421_head(k: int) -> dict[str, tuple]:
    """fastpose_duc.py ``_make_duc_stage``: [PixelShuffle, (conv, BN, ReLU) × NUM_CONV], NUM_CONV 4/2/1."""
    t: dict[str, tuple] = {}
    for name, cin, cout, nconv in (("duc1", 2048, 1024, 4), ("duc2", 1024, 512, 2), ("duc3", 512, 256, 1)):
        mid = cin // 4
        for i in range(nconv):
            out = cout if i == nconv - 1 else mid
            t[f"{name}.{1 + 3 * i}.weight"] = (out, mid, 3, 3)
            t.update(_bn(f"{name}.{2 + 3 * i}", out))
    t["conv_out.weight"] = (k, 256, 3, 3)
    t["conv_out.bias"] = (k,)
    return t


def duc_shuffle_table(k: int = 17) -> dict[str, tuple]:
    return resnet50_table(se=True, shuffle=True) | _duc421_head(k)


def duc_seresnet50_table(k: int = 17) -> dict[str, tuple]:
    """The same head on the 'se-resnet' backbone: what a FastPose_DUC res50 without BACKBONE 'shuffle' would save."""
    return resnet50_table(se=True) | _duc421_head(k)


def _fastpose_head(k: int, conv_dim: int) -> dict[str, tuple]:
    """fastpose.py: duc1 = DUC(512, 1024); duc2 = DUC(256, 1024 if CONV_DIM == 256 else 512); conv_out 3×3."""
    d2 = 1024 if conv_dim == 256 else 512
    t = {"duc1.conv.weight": (1024, 512, 3, 3), **_bn("duc1.bn", 1024)}
    t |= {"duc2.conv.weight": (d2, 256, 3, 3), **_bn("duc2.bn", d2)}
    return t | {"conv_out.weight": (k, conv_dim, 3, 3), "conv_out.bias": (k,)}


def dcn_table(k: int = 17, conv_dim: int = 128) -> dict[str, tuple]:
    return resnet50_table(se=True, dcn_stages=(2, 3, 4)) | _fastpose_head(k, conv_dim)


def fastpose_table(k: int = 17, conv_dim: int = 128) -> dict[str, tuple]:
    return resnet50_table(se=True) | _fastpose_head(k, conv_dim)


def _n_params(table: dict[str, tuple]) -> int:
    return sum(math.prod(s) for key, s in table.items() if not key.endswith(("running_mean", "running_var", "tracked")))


def seeded_state(table: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly ``table``'s keys and shapes. Weights are N(0, 1/fan) (fan = product of all but the
    first dimension) so that activations keep their scale through 50 layers: tiny weights would drive them into
    subnormal floats, which run many times slower on a CPU."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in table.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(500, dtype=torch.int64)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) > 1:
            out[key] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        else:
            out[key] = torch.randn(shape, generator=g) * 0.02
    return out


def _shapes(model: torch.nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# arch, table, state-dict entries, parameters (hand sums: SimplePose = plain ResNet-50 23,508,032 + deconvs 10,485,760
# + their BNs 1,536 + final 4,369; shuffle = SE-ResNet-50 34,656,832 + 3·9·3p² for p = 128/256/512 (9,289,728) + DUC
# head 13,907,217; DCN = FastPose-res50 40,577,745 + Σ 13 offset convs (18·9p + 18) = 580,842).
ZOO = [
    ("simplepose_res50", simplepose_table, 338, 33_999_697),
    ("fastpose_duc_res50_shuffle", duc_shuffle_table, 378, 57_853_777),
    ("fastpose_dcn_res50", dcn_table, 374, 41_158_587),
]


@pytest.fixture(scope="module")
def nets():
    """One network per new arch (K=17), built once: a res50 costs about a second to initialise on two cores. Tests
    may load weights into them; a test that needs particular weights loads them all itself."""
    return {arch: build_sppe(arch) for arch, *_ in ZOO}


def zeros_state(table: dict[str, tuple]) -> dict[str, torch.Tensor]:
    """Right keys and shapes, no values: enough for the key checks, which refuse a file before copying anything."""
    return {k: torch.zeros(s) for k, s in table.items()}


@pytest.mark.parametrize("arch, table, n_entries, n_params", ZOO, ids=[z[0] for z in ZOO])
def test_layout_parameters_and_strict_load(nets, arch, table, n_entries, n_params):
    spec = table()
    assert len(spec) == n_entries and _n_params(spec) == n_params
    model = nets[arch]
    assert _shapes(model) == spec  # every key and shape, nothing more
    assert sum(p.numel() for p in model.parameters()) == n_params

    state = seeded_state(spec, seed=3)
    model.load_state_dict(state, strict=True)  # PyTorch's own strict load, as AlphaPose's demo does
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in spec)
    # raypose's loader (models.checkpoints.load_checkpoint after reading the file), here without the file.
    state = seeded_state(spec, seed=4)
    load_state_dict_strict(model, state, f"{arch}.pth")
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in spec)


def test_simplepose_mismatch_with_fastpose_names_the_keys(nets):
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(nets["simplepose_res50"], zeros_state(fastpose_table()), "fast.pth")
    msg = str(e.value)
    assert "fast.pth: checkpoint does not fit SimplePose" in msg
    # missing: 3 ConvT weights + 3 BNs × 4 tensors (num_batches_tracked may be absent) + final_layer's 2 = 17;
    # unexpected: 4 SE × 4 + duc1/duc2 (conv + 5 BN entries each) + conv_out's 2 = 30.
    assert "missing keys (17): deconv_layers.0.weight, deconv_layers.1.weight, deconv_layers.1.bias, " in msg
    assert "unexpected keys (30): preact.layer1.0.se.fc.0.weight, preact.layer1.0.se.fc.0.bias, " in msg
    assert "conv_out" not in msg.split("missing keys")[1].split("unexpected")[0]


def test_shuffle_and_se_resnet_duc_differ_exactly_in_the_strided_3x3(nets):
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(nets["fastpose_duc_res50_shuffle"], zeros_state(duc_seresnet50_table()), "se.pth")
    msg = str(e.value)
    assert (
        "missing keys (3): preact.layer2.0.conv2.1.weight, preact.layer3.0.conv2.1.weight, "
        "preact.layer4.0.conv2.1.weight" in msg
    )
    assert (
        "unexpected keys (3): preact.layer2.0.conv2.weight, preact.layer3.0.conv2.weight, "
        "preact.layer4.0.conv2.weight" in msg
    )
    with pytest.raises(RuntimeError, match=r"conv2\.1\.weight"):
        nets["fastpose_duc_res50_shuffle"].load_state_dict(zeros_state(duc_seresnet50_table()), strict=True)


def test_dcn_and_plain_fastpose_refuse_each_others_files(nets):
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(nets["fastpose_dcn_res50"], zeros_state(fastpose_table()), "plain.pth")
    assert "missing keys (26): preact.layer2.0.conv2_offset.weight, preact.layer2.0.conv2_offset.bias, " in str(e.value)
    assert "unexpected" not in str(e.value)
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(build_sppe("fastpose_res50"), zeros_state(dcn_table()), "dcn.pth")
    assert "unexpected keys (26): preact.layer2.0.conv2_offset.weight, preact.layer2.0.conv2_offset.bias, " in str(
        e.value
    )


@pytest.mark.parametrize("k", [136, 133, 68, 21])
def test_dcn_with_conv_dim_256_for_whole_body_configs(k):
    # configs/halpe_136/.../2x-dcn.yaml (136), coco_wholebody/...2x-dcn-combined.yaml (133),
    # halpe_68_noface/...2x-dcn-combined.yaml (68), single_hand/...2x-dcn-regression.yaml (21): CONV_DIM 256.
    spec = dcn_table(k, conv_dim=256)
    assert _shapes(build_sppe("fastpose_dcn_res50", num_joints=k, conv_dim=256)) == spec
    assert spec["duc2.conv.weight"] == (1024, 256, 3, 3) and spec["conv_out.weight"] == (k, 256, 3, 3)


def test_fastpose_res50_conv_dim_256_halpe136():
    # configs/halpe_136/resnet/256x192_res50_lr1e-3_2x-regression.yaml (halpe136_fast_res50_256x192.pth): CONV_DIM 256.
    model = build_sppe("fastpose_res50", num_joints=136, conv_dim=256)
    assert _shapes(model) == fastpose_table(136, conv_dim=256)
    assert sum(p.numel() for p in model.parameters()) == _n_params(fastpose_table(136, conv_dim=256))


@pytest.mark.parametrize("arch, table", [z[:2] for z in ZOO], ids=[z[0] for z in ZOO])
def test_forward_shape_and_batchnorm_folding(nets, arch, table):
    net = nets[arch]
    net.load_state_dict(seeded_state(table(), seed=5))
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():  # BatchNorms with statistics and affine parameters far from identity, so folding matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t, lo, hi in ((m.running_mean, -0.1, 0.1), (m.running_var, 0.5, 1.5), (m.weight, 0.5, 1.5)):
                    t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)
    net.eval()
    x = torch.rand(1, 3, 256, 192, generator=g)
    with torch.inference_mode():
        out = net(x)
    assert out.shape == (1, 17, 64, 48) and torch.isfinite(out).all() and out.std() > 1e-3
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())  # every BN followed a conv
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == n_bn  # the caller's net is untouched
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), out, rtol=1e-4, atol=1e-5)
    if arch == "fastpose_dcn_res50":
        deform = [m for m in folded.modules() if isinstance(m, DeformConv)]
        assert len(deform) == 13 and all(m.bias is not None for m in deform)
        assert all(m.bias is None for m in net.modules() if isinstance(m, DeformConv))


# --- deformable convolution: AlphaPose's offset layout ---------------------------------------------------------------


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]``, zero outside (negative padding crops)."""
    return F.pad(x, (-dx, dx, -dy, dy))


def _conv_sampling_shifted(x: torch.Tensor, w: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """3×3 pad-1 convolution whose every tap reads (Δy, Δx) further: ``Σ_ij w_ij · x[y − 1 + i + Δy, x − 1 + j + Δx]``
    with zeros outside the image (pad first, then convolve unpadded, so the border is exact too)."""
    return F.conv2d(F.pad(x, (1 - dx, 1 + dx, 1 - dy, 1 + dy)), w)


def _deform(cin=3, cout=4, stride=1, seed=0):
    torch.manual_seed(seed)
    conv = DeformConv(cin, cout, 3, stride=stride, padding=1)
    return conv, torch.randn(2, cin, 9, 7)


@pytest.mark.parametrize("stride", [1, 2])
def test_zero_offset_is_a_plain_convolution(stride):
    conv, x = _deform(stride=stride)
    ho, wo = (9 - 1) // stride + 1, (7 - 1) // stride + 1
    out = conv(x, torch.zeros(2, 18, ho, wo))
    torch.testing.assert_close(out, F.conv2d(x, conv.weight, stride=stride, padding=1), rtol=1e-5, atol=1e-5)
    assert "conv2_offset" not in dict(conv.named_parameters()) and list(dict(conv.named_parameters())) == ["weight"]


@pytest.mark.parametrize("dy, dx", [(1, 0), (0, 1), (2, -1), (-1, -2)])
def test_constant_integer_offset_is_a_shifted_convolution(dy, dx):
    """Channels 0, 2, 4, … are the row offset and 1, 3, 5, … the column offset (AlphaPose's deformable_im2col)."""
    conv, x = _deform()
    offset = torch.zeros(2, 18, 9, 7)
    offset[:, 0::2] = dy
    offset[:, 1::2] = dx
    expected = _conv_sampling_shifted(x, conv.weight, dy, dx)
    torch.testing.assert_close(conv(x, offset), expected, rtol=1e-5, atol=1e-5)
    if dy != dx:  # swapping the pair would sample elsewhere: the test tells the orders apart
        assert not torch.allclose(_conv_sampling_shifted(x, conv.weight, dx, dy), expected, atol=1e-3)


def test_each_tap_reads_its_own_offset_pair_row_major():
    """Tap (i, j) takes channels 2·(i·3+j) (Δy) and 2·(i·3+j)+1 (Δx); the output is the sum over taps of a 1×1 conv
    of the input shifted by (i−1+Δy, j−1+Δx)."""
    conv, x = _deform()
    g = torch.Generator().manual_seed(1)
    d = torch.randint(-2, 3, (9, 2), generator=g)
    offset = torch.zeros(2, 18, 9, 7)
    expected = torch.zeros(2, 4, 9, 7)
    for i in range(3):
        for j in range(3):
            k = i * 3 + j
            offset[:, 2 * k], offset[:, 2 * k + 1] = float(d[k, 0]), float(d[k, 1])
            shifted = _shift(x, i - 1 + int(d[k, 0]), j - 1 + int(d[k, 1]))
            expected += torch.einsum("oc,bchw->bohw", conv.weight[:, :, i, j], shifted)
    torch.testing.assert_close(conv(x, offset), expected, rtol=1e-5, atol=1e-5)


def test_fractional_offset_interpolates_bilinearly_with_zero_outside():
    conv, x = _deform()
    offset = torch.zeros(2, 18, 9, 7)
    offset[:, 0::2] = 0.5  # half a row down at every tap
    expected = 0.5 * _conv_sampling_shifted(x, conv.weight, 0, 0) + 0.5 * _conv_sampling_shifted(x, conv.weight, 1, 0)
    torch.testing.assert_close(conv(x, offset), expected, rtol=1e-5, atol=1e-5)


def test_deform_conv_is_fx_traceable_as_one_call():
    """torchvision's wrapper branches on ``offset.shape``; wrapped, any fx tracer (torch.ao's int8 ``prepare_fx`` in
    models.quantize included) records one call and the traced block computes the same."""
    torch.manual_seed(0)
    down = torch.nn.Sequential(torch.nn.Conv2d(32, 64, 1, stride=2, bias=False), torch.nn.BatchNorm2d(64))
    block = Bottleneck(32, 16, 2, down, dcn=True).eval()
    traced = torch.fx.symbolic_trace(block)
    calls = [n for n in traced.graph.nodes if n.op == "call_function" and "deform_conv2d" in str(n.target)]
    assert len(calls) == 1
    x = torch.randn(1, 32, 12, 10)
    with torch.no_grad():
        block.conv2_offset.bias.normal_()  # non-zero offsets
        torch.testing.assert_close(traced(x), block(x))


def test_bfloat16_runs_in_float32_inside():
    """torchvision's deform_conv2d has no bfloat16 kernel; the actor's ``precision=bf16`` must still run."""
    conv, x = _deform()
    offset = torch.randn(2, 18, 9, 7)
    ref = conv(x, offset)
    out = conv.to(torch.bfloat16)(x.bfloat16(), offset.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.1)


@pytest.mark.parametrize("stride", [1, 2])
def test_dcn_bottleneck_uses_its_offset_conv_at_the_block_stride(stride):
    torch.manual_seed(0)
    down = torch.nn.Sequential(torch.nn.Conv2d(32, 64, 1, stride=stride, bias=False), torch.nn.BatchNorm2d(64))
    dcn = Bottleneck(32, 16, stride, down, dcn=True).eval()
    plain = Bottleneck(32, 16, stride, down).eval()
    assert dcn.conv2_offset.stride == (stride, stride) and dcn.conv2.stride == stride
    state = {k: v for k, v in dcn.state_dict().items() if "conv2_offset" not in k}
    plain.load_state_dict(state, strict=True)  # conv2.weight has the plain conv's shape (p, p, 3, 3)
    x = torch.randn(1, 32, 12, 10)
    with torch.no_grad():
        dcn.conv2_offset.weight.zero_()
        dcn.conv2_offset.bias.zero_()
        torch.testing.assert_close(dcn(x), plain(x), rtol=1e-5, atol=1e-5)
        dcn.conv2_offset.bias[0::2] = 1.0  # every tap one row down
        assert not torch.allclose(dcn(x), plain(x), atol=1e-4)


def test_pixel_unshuffle_channel_order_is_alphapose_s(nets):
    """AlphaPose's PixelUnshuffle (view (b, c, h/r, r, w/r, r), permute (0, 1, 3, 5, 2, 4)): output channel
    c·r² + i·r + j at (y, x) is input channel c at (r·y + i, r·x + j)."""
    model = nets["fastpose_duc_res50_shuffle"]
    unshuffle = model.preact.layer2[0].conv2[0]
    x = torch.randn(1, 3, 4, 6)
    out = unshuffle(x)
    assert out.shape == (1, 12, 2, 3)
    for c in range(3):
        for i in range(2):
            for j in range(2):
                assert torch.equal(out[0, c * 4 + i * 2 + j], x[0, c, i::2, j::2])
    assert isinstance(model.preact.layer1[0].conv2, torch.nn.Conv2d)  # stride-1 blocks keep the plain 3×3
    assert all(isinstance(model.preact.layer2[b].conv2, torch.nn.Conv2d) for b in (1, 2, 3))
