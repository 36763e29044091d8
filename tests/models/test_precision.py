"""models.precision: what ``auto`` resolves to, from the CPU's flags (never from a timing)."""

from __future__ import annotations

import pytest

from models.precision import ENV_OVERRIDE, cpu_flags, cpu_has_native_bf16, native_bf16_in, resolve_precision

ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n\n"
SPR = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_tile amx_bf16 amx_int8\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw avx512vl\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes bf16 i8mm\n"


def test_cpu_flags_reads_x86_and_arm_lines():
    assert {"avx512_bf16", "avx512f"} <= cpu_flags(ZEN4)
    assert "amx_bf16" in cpu_flags(SPR)
    assert "avx512_bf16" not in cpu_flags(SKYLAKE)
    assert "bf16" in cpu_flags(ARM)
    assert cpu_flags("no flags here\n") == frozenset()


@pytest.mark.parametrize(
    ("text", "native"),
    [(ZEN4, True), (SPR, True), (SKYLAKE, False), (ARM, False)],  # arm64: oneDNN's bf16 path is not measured there
)
def test_native_bf16_flags(text, native):
    assert native_bf16_in(cpu_flags(text)) is native


def test_auto_resolution_rules():
    assert resolve_precision("auto", gpu=False, native_bf16=True) == "bf16"
    assert resolve_precision("auto", gpu=False, native_bf16=False) == "fp32"
    assert resolve_precision("auto", gpu=True, native_bf16=True) == "fp32"  # GPU half precision stays opt-in
    assert resolve_precision("auto", gpu=False, offers_bf16=False, native_bf16=True) == "fp32"
    for explicit in ("fp32", "bf16", "fp16", "int8"):
        assert resolve_precision(explicit, gpu=False, native_bf16=False) == explicit


def test_environment_overrides_the_flags(monkeypatch):
    monkeypatch.setenv(ENV_OVERRIDE, "1")
    assert cpu_has_native_bf16() is True
    assert resolve_precision("auto", gpu=False) == "bf16"
    monkeypatch.setenv(ENV_OVERRIDE, "0")
    assert cpu_has_native_bf16() is False
    assert resolve_precision("auto", gpu=False) == "fp32"
    monkeypatch.setenv(ENV_OVERRIDE, "yes")
    with pytest.raises(ValueError, match="RAYPOSE_CPU_BF16 must be 0 or 1"):
        cpu_has_native_bf16()
