"""Which float precision a network runs in by default: ``auto`` → bf16 where the CPU computes bf16 in hardware.

A heatmap SPPE's forward is almost all convolutions, which oneDNN runs in bf16 on CPUs with AVX512-BF16 (AMD Zen 4,
Intel Cooper Lake and later) or AMX-BF16 (Intel Sapphire Rapids and later). There FastPose-res50's forward is
1.7–2.2× fp32's (batch 8, 2 threads; ``benchmarks/end_to_end.py``'s bare forwards: 22.7 vs 13.1 persons/s); on CPUs
without those instructions oneDNN emulates bf16 and the same forward is 10–40× *slower* than fp32. So ``auto``
reads the CPU's flags, never a timing (a timing would make the choice, and so the outputs, depend on the machine's
load).

``auto`` resolves to:

* ``bf16`` on a CPU whose flags include ``avx512_bf16`` or ``amx_bf16`` (Linux ``/proc/cpuinfo``);
* ``fp32`` on any other CPU, and on a GPU (fp16/bf16 there are opt-in until measured on one).

``RAYPOSE_CPU_BF16=0`` (or ``1``) in the environment overrides the flags (``cpu_has_native_bf16``).

fp32 (``jobs.label --exact``) is the mode whose outputs equal AlphaPose's given the same weights and boxes; ``auto``
trades that equality for speed where the CPU has native bf16. The job resolves ``auto`` on its driver before it
hashes the config, so the hash (and resume) sees the precision that ran.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = [
    "ENV_OVERRIDE",
    "NATIVE_BF16_FLAGS",
    "cpu_flags",
    "cpu_has_native_bf16",
    "native_bf16_in",
    "resolve_precision",
]

#: ``/proc/cpuinfo`` flags of x86 instructions that compute bf16 dot products in hardware.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: ``0``/``1``: what ``cpu_has_native_bf16`` answers, whatever the flags say.
ENV_OVERRIDE = "RAYPOSE_CPU_BF16"


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU feature flags of ``cpuinfo`` (the text of ``/proc/cpuinfo``; read from there when None; empty where
    it does not exist, e.g. macOS)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):  # x86 / arm64
            return frozenset(value.split())
    return frozenset()


def native_bf16_in(flags: frozenset[str]) -> bool:
    """Whether CPU ``flags`` (``cpu_flags``) include an instruction set that computes bf16 in hardware. arm64's
    ``bf16`` is not counted: oneDNN's bf16 speed there is not measured."""
    return any(f in flags for f in NATIVE_BF16_FLAGS)


@functools.cache
def _flags_say_native_bf16() -> bool:
    return native_bf16_in(cpu_flags())


def cpu_has_native_bf16() -> bool:
    """True when this machine's CPU computes bf16 in hardware (``NATIVE_BF16_FLAGS``). The environment variable
    ``RAYPOSE_CPU_BF16`` (``0`` or ``1``) overrides the flags: e.g. ``0`` keeps ``auto`` at fp32 on every node of a
    mixed cluster, and the test suite sets it so results do not depend on the machine that runs it."""
    forced = os.environ.get(ENV_OVERRIDE, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ValueError(f"{ENV_OVERRIDE} must be 0 or 1, got {forced!r}")
    return _flags_say_native_bf16()


def resolve_precision(requested: str, *, gpu: bool, offers_bf16: bool = True, native_bf16: bool | None = None) -> str:
    """``requested`` unless it is ``"auto"``; then ``"bf16"`` or ``"fp32"`` by the rule of this module.

    Args:
        requested: a precision name (``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"``, ``"int8"``).
        gpu: the network runs on a GPU.
        offers_bf16: the network has a bf16 path (e.g. False for a detector that reads precomputed boxes).
        native_bf16: the CPU's answer; None asks this machine (``cpu_has_native_bf16``).
    """
    if requested != "auto":
        return requested
    if gpu or not offers_bf16:
        return "fp32"
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    return "bf16" if native else "fp32"
