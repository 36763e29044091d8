"""models/ tests are pure: no Ray cluster may start from here (Ray's own unit-test rule)."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _no_ray_init(monkeypatch: pytest.MonkeyPatch) -> None:
    ray = sys.modules.get("ray")
    if ray is not None:

        def refuse(*args, **kwargs):
            raise RuntimeError("tests/models must not start Ray")

        monkeypatch.setattr(ray, "init", refuse)
