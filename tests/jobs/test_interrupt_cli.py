"""Ctrl-C in ``jobs.proposals`` and ``jobs.train_sppe``: one line saying how to resume, exit 130, no traceback."""

from __future__ import annotations

import importlib

import pytest

from jobs.ray_init import EXIT_INTERRUPTED, run_interruptible


@pytest.mark.parametrize("module", ["jobs.proposals", "jobs.train_sppe"])
def test_ctrl_c_prints_one_line_and_exits_130(module, monkeypatch, capsys):
    mod = importlib.import_module(module)

    def interrupted() -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "main", interrupted)
    assert mod._cli() == EXIT_INTERRUPTED == 130
    err = capsys.readouterr().err
    assert err.strip() == mod.INTERRUPTED and "resume" in err and "Traceback" not in err


def test_run_interruptible_passes_other_outcomes_through(capsys):
    assert run_interruptible(lambda: 3, "x") == 3
    with pytest.raises(ValueError):
        run_interruptible(lambda: int("nope"), "x")
    assert capsys.readouterr().err == ""
