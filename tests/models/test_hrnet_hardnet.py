"""HRNet-W32 and HarDNet-68/85 pose networks (models/hrnet.py, models/hardnet.py).

The expected state-dict tables are generated here from the architectures' descriptions (AlphaPose's
``alphapose/models/hrnet.py`` with ``configs/coco/hrnet/256x192_w32_lr1e-3.yaml``, and ``alphapose/models/hardnet.py``
with ``configs/coco/hardnet/256x192_hard{68,85}_lr1e-3_1x.yaml``): stages, branches, blocks, widths and the
explicit ``base`` index layout, written as templates, never read from our modules. The harmonic-block width rule is
re-derived here and pinned to the widths AlphaPose hard-codes (its ``channels`` lists and ``last_proj`` inputs).
"""

from __future__ import annotations

import math

import pytest
import torch

from models.hardnet import HarDBlock, hardnet68, hardnet85
from models.hrnet import hrnet_w32

Table = dict[str, tuple[int, ...]]


def _bn(t: Table, prefix: str, c: int) -> None:
    t[f"{prefix}.weight"] = (c,)
    t[f"{prefix}.bias"] = (c,)
    t[f"{prefix}.running_mean"] = (c,)
    t[f"{prefix}.running_var"] = (c,)
    t[f"{prefix}.num_batches_tracked"] = ()


def _n_params(t: Table) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(s) for k, s in t.items() if not k.endswith(buffers))


# --------------------------------------------------------------------------------------------------------- HRNet


def hrnet_w32_table(k: int = 17) -> Table:
    """HRNet-W32: stem, layer1 (4 Bottlenecks, 64 planes), stages 2/3/4 with 2/3/4 branches × (1, 4, 3) modules,
    4 BasicBlocks per branch, widths 32·2^b; the last module of stage 4 fuses into branch 0 only."""
    t: Table = {"conv1.weight": (64, 3, 3, 3)}
    _bn(t, "bn1", 64)
    t["conv2.weight"] = (64, 64, 3, 3)
    _bn(t, "bn2", 64)
    for b in range(4):
        p = f"layer1.{b}"
        t[f"{p}.conv1.weight"] = (64, 64 if b == 0 else 256, 1, 1)
        _bn(t, f"{p}.bn1", 64)
        t[f"{p}.conv2.weight"] = (64, 64, 3, 3)
        _bn(t, f"{p}.bn2", 64)
        t[f"{p}.conv3.weight"] = (256, 64, 1, 1)
        _bn(t, f"{p}.bn3", 256)
    t["layer1.0.downsample.0.weight"] = (256, 64, 1, 1)
    _bn(t, "layer1.0.downsample.1", 256)

    w = (32, 64, 128, 256)
    # transitions: 256 → 32 re-width on branch 0, then one new stride-2 branch per stage from the lowest one
    t["transition1.0.0.weight"] = (32, 256, 3, 3)
    _bn(t, "transition1.0.1", 32)
    t["transition1.1.0.0.weight"] = (64, 256, 3, 3)
    _bn(t, "transition1.1.0.1", 64)
    t["transition2.2.0.0.weight"] = (128, 64, 3, 3)
    _bn(t, "transition2.2.0.1", 128)
    t["transition3.3.0.0.weight"] = (256, 128, 3, 3)
    _bn(t, "transition3.3.0.1", 256)

    for stage, n_branches, n_modules in ((2, 2, 1), (3, 3, 4), (4, 4, 3)):
        for m in range(n_modules):
            pre = f"stage{stage}.{m}"
            for br in range(n_branches):
                for blk in range(4):
                    p = f"{pre}.branches.{br}.{blk}"
                    t[f"{p}.conv1.weight"] = (w[br], w[br], 3, 3)
                    _bn(t, f"{p}.bn1", w[br])
                    t[f"{p}.conv2.weight"] = (w[br], w[br], 3, 3)
                    _bn(t, f"{p}.bn2", w[br])
            targets = 1 if (stage == 4 and m == n_modules - 1) else n_branches
            for i in range(targets):
                for j in range(n_branches):
                    p = f"{pre}.fuse_layers.{i}.{j}"
                    if j > i:
                        t[f"{p}.0.weight"] = (w[i], w[j], 1, 1)
                        _bn(t, f"{p}.1", w[i])
                    elif j < i:
                        for s in range(i - j):
                            out = w[i] if s == i - j - 1 else w[j]
                            t[f"{p}.{s}.0.weight"] = (out, w[j], 3, 3)
                            _bn(t, f"{p}.{s}.1", out)
    t["final_layer.weight"] = (k, 32, 1, 1)
    t["final_layer.bias"] = (k,)
    return t


# ------------------------------------------------------------------------------------------------------- HarDNet


def harmonic_widths(base_ch: int, gr: int, grmul: float, n: int) -> tuple[list[int], list[int], int]:
    """(per-layer out widths, per-layer in widths, block output width) of a harmonic dense block.

    Layer L ≥ 1 reads layers L − 2^i for all 2^i dividing L; its width is gr·grmul^(links−1), multiplied out left
    to right, rounded as ``int(int(w + 1) / 2) * 2``. The output concatenates the odd layers and the last.
    """
    widths = [base_ch]
    ins = []
    for layer in range(1, n + 1):
        src = [layer - 2**i for i in range(layer.bit_length()) if layer % 2**i == 0]
        w = float(gr)
        for _ in range(len(src) - 1):
            w *= grmul
        widths.append(int(int(w + 1) / 2) * 2)
        ins.append(sum(widths[s] for s in src))
    out = sum(widths[layer] for layer in range(1, n + 1) if layer % 2 == 1 or layer == n)
    return widths[1:], ins, out


def _hardblock(t: Table, prefix: str, base_ch: int, gr: int, n: int, grmul: float = 1.7) -> int:
    outs, ins, total = harmonic_widths(base_ch, gr, grmul, n)
    for j, (o, i) in enumerate(zip(outs, ins)):
        t[f"{prefix}.layers.{j}.conv.weight"] = (o, i, 3, 3)
        _bn(t, f"{prefix}.layers.{j}.norm", o)
    return total


def _convlayer(t: Table, prefix: str, cin: int, cout: int, k: int) -> int:
    t[f"{prefix}.conv.weight"] = (cout, cin, k, k)
    _bn(t, f"{prefix}.norm", cout)
    return cout


# AlphaPose's HarDNetBase(arch).base, index by index: ("conv", out, kernel), ("pool",) or ("blk", growth, layers).
BASE_68 = [
    ("conv", 32, 3), ("conv", 64, 3), ("pool",),
    ("blk", 14, 8), ("conv", 128, 1), ("pool",),
    ("blk", 16, 16), ("conv", 256, 1),
    ("blk", 20, 16), ("conv", 320, 1), ("pool",),
    ("blk", 40, 16),
]  # fmt: skip
BASE_85 = [
    ("conv", 48, 3), ("conv", 96, 3), ("pool",),
    ("blk", 24, 8), ("conv", 192, 1), ("pool",),
    ("blk", 24, 16), ("conv", 256, 1),
    ("blk", 28, 16), ("conv", 320, 1), ("pool",),
    ("blk", 36, 16), ("conv", 480, 1),
    ("blk", 48, 16),
]  # fmt: skip

# HarDNetPose decoder constants: (last_proj out, last_blk (gr, n), up (width, SC, gr, n) ×3, skip nodes,
# AlphaPose's hard-coded skip widths ``channels``, how many up steps concatenate their skip).
DECODER = {
    68: dict(proj=192, last=(72, 8), up=[(256, 32, 48, 8), (128, 32, 32, 8), (64, 0, 20, 4)],
             skips=(1, 3, 8, 11), channels=(64, 124, 328, 654), skip_lv=2),
    85: dict(proj=256, last=(80, 8), up=[(256, 32, 64, 8), (192, 32, 48, 8), (96, 0, 28, 4)],
             skips=(1, 3, 8, 13), channels=(96, 214, 458, 784), skip_lv=3),
}  # fmt: skip


def hardnet_table(arch: int, k: int = 17) -> tuple[Table, dict[int, int]]:
    """Expected state dict of HarDNetPose(arch) and the output width of each ``base`` entry."""
    layout = {68: BASE_68, 85: BASE_85}[arch]
    dec = DECODER[arch]
    t: Table = {}
    widths: dict[int, int] = {}
    ch = 3
    for idx, entry in enumerate(layout):
        if entry[0] == "conv":
            ch = _convlayer(t, f"base.{idx}", ch, entry[1], entry[2])
        elif entry[0] == "blk":
            ch = _hardblock(t, f"base.{idx}", ch, entry[1], entry[2])
        widths[idx] = ch
    x = _convlayer(t, "last_proj", ch, dec["proj"], 1)
    x = _hardblock(t, "last_blk", 3 * x, *dec["last"])
    for i, (width, sc, gr, n) in enumerate(dec["up"]):
        cin = x + dec["channels"][3 - i] if i < dec["skip_lv"] else x
        _convlayer(t, f"conv1x1_up.{i}", cin, width, 1)
        x = _hardblock(t, f"denseBlocksUp.{i}", 3 * (width - sc), gr, n)
    x += sum(u[1] for u in dec["up"])
    head = max(128, 4 * k)
    t["conv_out.0.weight"] = (head, x, 3, 3)
    t["conv_out.0.bias"] = (head,)
    t["conv_out.2.weight"] = (k, head, 1, 1)
    t["conv_out.2.bias"] = (k,)
    return t, widths


# ------------------------------------------------------------------------------------------------------- shared

# (builder, expected table, state-dict entries, parameters). Parameter counts: our own; the HRNet paper (Sun et al.,
# CVPR 2019, Table 1) gives 28.5M for HRNet-W32 at 256×192. No published count exists for AlphaPose's HarDNetPose
# heads (HarDNet's 17.6M / 36.7M are ImageNet classifiers, a different network).
NETS = {
    "hrnet_w32": (hrnet_w32, hrnet_w32_table, 1754, 28_536_113),
    "hardnet68": (hardnet68, lambda k=17: hardnet_table(68, k)[0], 562, 20_241_145),
    "hardnet85": (hardnet85, lambda k=17: hardnet_table(85, k)[0], 664, 36_674_665),
}


def random_state_dict(table: Table, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in table.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(1000, dtype=torch.int64)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(".weight") and len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            out[key] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif key.endswith(".weight"):  # BN scale near 1 keeps activations away from (slow) denormals
            out[key] = 1.0 + torch.randn(shape, generator=g) * 0.1
        else:
            out[key] = torch.randn(shape, generator=g) * 0.1
    return out


@pytest.fixture(scope="module")
def loaded() -> dict[str, tuple[torch.nn.Module, dict[str, torch.Tensor]]]:
    """Each net built once and loaded strictly from a seeded state dict of the expected table."""
    nets = {}
    for seed, (name, (build, table, _, _)) in enumerate(NETS.items()):
        state = random_state_dict(table(), seed=seed)
        model = build().eval()
        model.load_state_dict(state, strict=True)
        nets[name] = (model, state)
    return nets


@pytest.mark.parametrize("name", list(NETS))
def test_state_dict_matches_expected_table(name):
    build, table, n_entries, n_params = NETS[name]
    expected = table()
    model = build()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(ours) - set(expected)) == [] and sorted(set(expected) - set(ours)) == []
    assert ours == expected
    assert len(expected) == n_entries
    assert _n_params(expected) == n_params
    assert sum(p.numel() for p in model.parameters()) == n_params


def test_hrnet_parameter_count_matches_paper():
    assert round(NETS["hrnet_w32"][3] / 1e6, 1) == 28.5  # Sun et al., CVPR 2019, Table 1: HRNet-W32 28.5M


@pytest.mark.parametrize("name", list(NETS))
def test_seeded_state_dict_loads_strictly(name, loaded):
    model, state = loaded[name]
    current = model.state_dict()
    assert current.keys() == state.keys()
    for key in state:
        assert torch.equal(current[key], state[key]), key
    # one wrong shape or one missing key is refused
    _, table, _, _ = NETS[name]
    bad = dict(state)
    key = next(k for k in bad if k.endswith(".weight") and bad[k].dim() == 4)
    bad[key] = torch.zeros(bad[key].shape[0] + 1, *bad[key].shape[1:])
    with pytest.raises(RuntimeError, match="size mismatch"):
        NETS[name][0]().load_state_dict(bad, strict=True)


def test_halpe136_hardnet68_head():
    """configs/halpe_136/hardnet/256x192_hard68_lr1e-3_1x.yaml: NUM_JOINTS 136 widens conv_out to 4·136 = 544."""
    model = hardnet68(num_joints=136)
    expected, _ = hardnet_table(68, 136)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert expected["conv_out.0.weight"] == (544, 162, 3, 3) and expected["conv_out.2.weight"] == (136, 544, 1, 1)
    assert sum(p.numel() for p in model.parameters()) == _n_params(expected) == 20_920_016


@pytest.mark.parametrize("arch", [68, 85])
def test_harmonic_widths_reproduce_alphapose_constants(arch):
    """The width rule gives exactly the skip widths and projection inputs AlphaPose hard-codes for each arch."""
    _, widths = hardnet_table(arch)
    dec = DECODER[arch]
    assert tuple(widths[i] for i in dec["skips"]) == dec["channels"]
    assert widths[len(widths) - 1] == {68: 654, 85: 784}[arch]  # last_proj = ConvLayer(654|784, ...)
    assert 3 * dec["proj"] == {68: 576, 85: 768}[arch]  # last_blk = HarDBlock(576|768, ...)


@pytest.mark.parametrize("name", list(NETS))
def test_forward_shape_and_determinism(name, loaded):
    model, _ = loaded[name]
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(3))
    captured: dict[int, tuple[int, ...]] = {}
    hooks = []
    if name.startswith("hardnet"):
        dec = DECODER[int(name[-2:])]
        for i in dec["skips"]:
            hooks.append(model.base[i].register_forward_hook(lambda m, a, y, i=i: captured.__setitem__(i, y.shape)))
    with torch.no_grad():
        y1 = model(x)
        for h in hooks:
            h.remove()
        y2 = model(x)
    assert y1.shape == (1, 17, 64, 48)
    assert y1.dtype == torch.float32 and torch.isfinite(y1).all()
    assert y1.abs().sum() > 0
    assert torch.equal(y1, y2)
    if name.startswith("hardnet"):
        # skips at strides 2, 4, 8, 16 with AlphaPose's widths
        expected = [(1, c, 256 // s, 192 // s) for c, s in zip(dec["channels"], (2, 4, 8, 16))]
        assert [tuple(captured[i]) for i in dec["skips"]] == expected


def test_hardblock_links_and_output_order():
    """Layer L reads cat(L−1, L−2, L−4, …) nearest first; the block returns cat(layers 1, 3, 5, …, last)."""
    torch.manual_seed(0)
    n = 8
    blk = HarDBlock(6, 4, 1.7, n).eval()
    ins: dict[int, torch.Tensor] = {}
    outs: dict[int, torch.Tensor] = {}

    def record(L: int):
        def hook(module, args, y):
            ins[L] = args[0].clone()
            outs[L] = y.clone()

        return hook

    for j, layer in enumerate(blk.layers):
        layer.register_forward_hook(record(j + 1))
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        y = blk(x)
    outs[0] = x
    for L in range(1, n + 1):
        src = [L - 2**i for i in range(L.bit_length()) if L % 2**i == 0]
        assert torch.equal(ins[L], torch.cat([outs[s] for s in src], 1)), L
    assert torch.equal(y, torch.cat([outs[L] for L in (1, 3, 5, 7, 8)], 1))
    assert blk.out_channels == y.shape[1]


def _context(x: torch.Tensor) -> torch.Tensor:
    """AlphaPose's [x, 9×9 average (zero padding counted), x / (spatial sum + 0.1)]."""
    avg = torch.nn.functional.avg_pool2d(x, 9, stride=1, padding=4, count_include_pad=True)
    return torch.cat([x, avg, x / (x.sum((2, 3), keepdim=True) + 0.1)], 1)


@pytest.mark.parametrize("arch", [68, 85])
def test_hardnet_decoder_wiring(arch, loaded):
    """Each decoder module sees what AlphaPose's ``HarDNetPose.forward`` feeds it: context of the pooled projection,
    bilinear (align_corners) resize + skip concatenation (first ``skip_lv`` steps), SC split, and [sc1, sc0, x]."""
    model, _ = loaded[f"hardnet{arch}"]
    dec = DECODER[arch]
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(name: str):
        def hook(module, args, y):
            seen[name] = (args[0].clone(), y.clone())

        return hook

    mods = {"last_proj": model.last_proj, "last_blk": model.last_blk, "conv_out": model.conv_out}
    mods.update({f"base{i}": model.base[i] for i in dec["skips"]})
    mods.update({f"up{i}": model.conv1x1_up[i] for i in range(3)})
    mods.update({f"dense{i}": model.denseBlocksUp[i] for i in range(3)})
    hooks = [m.register_forward_hook(record(n)) for n, m in mods.items()]
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()

    def close(a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6)

    pooled = torch.nn.functional.avg_pool2d(seen["last_proj"][1], 2, stride=2)
    assert close(seen["last_blk"][0], _context(pooled))
    prev = seen["last_blk"][1]
    shortcuts = []
    for i, (width, sc, _, _) in enumerate(dec["up"]):
        skip = seen[f"base{dec['skips'][3 - i]}"][1]
        up = torch.nn.functional.interpolate(prev, size=skip.shape[2:], mode="bilinear", align_corners=True)
        if i < dec["skip_lv"]:
            up = torch.cat([up, skip], 1)
        assert close(seen[f"up{i}"][0], up), i
        y = seen[f"up{i}"][1]
        assert y.shape[1] == width
        if sc:
            shortcuts.append(y[:, width - sc :])
        assert close(seen[f"dense{i}"][0], _context(y[:, : width - sc])), i
        prev = seen[f"dense{i}"][1]
    size = prev.shape[2:]
    sc0, sc1 = (torch.nn.functional.interpolate(s, size=size, mode="bilinear", align_corners=True) for s in shortcuts)
    assert close(seen["conv_out"][0], torch.cat([sc1, sc0, prev], 1))
