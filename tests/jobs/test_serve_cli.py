"""jobs.serve refuses what cannot serve before Ray starts (exit 2 with the reason); one config file drives both jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

import jobs.ray_init
from jobs.serve import main as serve_main
from pipelines.label import LabelConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("Ray must not start for a configuration that is refused")

    monkeypatch.setattr(jobs.ray_init, "init_ray", refuse)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "--set",
                "detector.arch=precomputed",
                "--set",
                "detector.weights=x.json",
                "--set",
                "sppe.random_weights=true",
            ],
            "an uploaded image has none",
        ),
        (["--config", str(REPO / "configs" / "demo.yaml"), "--set", "serve.colour=red"], "colour"),
        (["--config", str(REPO / "configs" / "demo.yaml"), "--port", "70000"], "serve.port"),
        (["--config", str(REPO / "configs" / "demo.yaml"), "--detach"], "RAY_ADDRESS"),
        (["--config", str(REPO / "configs" / "demo.yaml"), "--set", "serve.max_request_bytes=0"], "max_request_bytes"),
        (
            [
                "--set",
                "detector.arch=yolo",
                "--set",
                "detector.weights=/nonexistent/yolo.pt",
                "--set",
                "sppe.random_weights=true",
            ],
            "/nonexistent/yolo.pt",
        ),
    ],
)
def test_refused_before_ray_with_the_reason(args, message, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert serve_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err


def test_jobs_label_reads_a_config_with_a_serve_section_and_does_not_hash_it():
    from jobs.label import build_config

    a = build_config(str(REPO / "configs" / "demo.yaml"), [])
    b = build_config(str(REPO / "configs" / "demo.yaml"), ["serve.port=9000", "serve.sppe_max_batch=4"])
    assert isinstance(b, LabelConfig) and b.serve.port == 9000
    assert a.result_affecting() == b.result_affecting()  # committed outputs stay valid whatever the endpoint's settings


def test_app_builder_for_serve_run_takes_config_and_overrides():
    """``serve run jobs.serve:app_builder config=… set='a=b;c=d'`` builds the application without starting Ray."""
    from ray.serve import Application

    from jobs.serve import app_builder

    if not (REPO / "weights" / "yolo11n-pose.pt").exists():
        pytest.skip("weights missing: run `make weights`")
    app = app_builder(
        {"config": str(REPO / "configs" / "demo.yaml"), "set": "serve.sppe_max_batch=8;sppe.flip_test=true"}
    )
    assert isinstance(app, Application)
    with pytest.raises(ValueError, match="colour"):
        app_builder({"config": str(REPO / "configs" / "demo.yaml"), "set": "serve.colour=red"})
