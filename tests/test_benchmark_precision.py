"""``benchmarks/precision.py`` (the evidence behind ``precision: auto``) runs end to end on a few real crops."""

from __future__ import annotations

import json

import pytest

from benchmarks.precision import agreement, main


def test_agreement_by_hand():
    import numpy as np

    ref = np.zeros((1, 2, 2))
    moved = np.array([[[3.0, 4.0], [0.0, 0.0]]])  # one point 5 px away, one in place
    r = agreement(moved, ref, crop_side=100.0)
    assert r["shift_median_px"] == 2.5 and r["share_over_4px"] == 0.5
    assert r["oks_to_fp32_mean"] == pytest.approx((np.exp(-25 / (2 * 100**2 * 0.01)) + 1) / 2, abs=1e-4)


def test_precision_benchmark_smoke_run(shared_data, tmp_path):
    from models.zoo import WeightsMissingError, weights_file

    try:
        weights = weights_file("blazepose_full")
    except WeightsMissingError as e:
        pytest.skip(str(e))
    out = tmp_path / "precision.json"
    assert main(["--data", str(shared_data), "--limit", "4", "--weights", str(weights), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {"blazepose_regression_bf16", "blazepose_heatmaps_bf16", "fastpose_res50_random_mixed"} <= set(rows)
    assert 0 < rows["fastpose_res50_random_mixed"]["relative_heatmap_error"] < 0.01
    assert 0.9 < rows["blazepose_regression_bf16"]["oks_to_fp32_mean"] <= 1.0
