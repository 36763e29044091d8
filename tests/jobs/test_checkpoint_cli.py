"""``python -m jobs.checkpoint inspect|convert`` on checkpoints made here (seeded, official layout)."""

from __future__ import annotations

import hashlib
import json

import torch

from jobs.checkpoint import main
from models.checkpoints import load_checkpoint, read_state_dict
from models.sppe import build_sppe


def test_inspect_reports_arch_joints_params_and_hash(tmp_path, capsys):
    path = tmp_path / "halpe_r18.pth"
    torch.save(build_sppe("fastpose_res18", num_joints=26).state_dict(), path)
    assert main(["inspect", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["arch"] == "fastpose_res18" and d["num_joints"] == 26 and d["keypoint_set"] == "halpe26"
    assert d["num_params"] == sum(p.numel() for p in build_sppe("fastpose_res18", num_joints=26).parameters())
    assert d["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert main(["inspect", str(path)]) == 0
    assert "fastpose_res18" in capsys.readouterr().out


def test_convert_writes_clean_loadable_file(tmp_path, capsys):
    model = build_sppe("fastpose_res18")
    src = tmp_path / "wrapped.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "optimizer": {}}, src)
    dst = tmp_path / "clean.pth"
    assert main(["convert", str(src), str(dst)]) == 0
    assert "sha256" in capsys.readouterr().out
    raw = torch.load(dst, weights_only=True)
    assert set(raw) == set(model.state_dict()) and not any(k.startswith("module.") for k in raw)
    fresh = build_sppe("fastpose_res18")
    load_checkpoint(fresh, str(dst))
    assert torch.equal(fresh.conv_out.weight, model.conv_out.weight)
    assert read_state_dict(str(dst))[1] == hashlib.sha256(dst.read_bytes()).hexdigest()


def test_bad_inputs_exit_2_with_message(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.pth")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    assert main(["inspect", str(tmp_path / "junk.pth")]) == 2
    assert "junk.pth" in capsys.readouterr().err
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    assert main(["convert", str(tmp_path / "other.pth"), str(tmp_path / "out.pth")]) == 2
    assert "not a FastPose state dict" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()
