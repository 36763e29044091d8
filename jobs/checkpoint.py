"""Inspect and convert SPPE checkpoints.

    python -m jobs.checkpoint inspect PATH [--json]
        Architecture (as a ``build_sppe`` name), keypoint count and default keypoint set, parameter count, sha256,
        and whether the file is a known official AlphaPose checkpoint. The file is loaded weights-only and then
        strictly into the architecture it claims to be, so "inspect succeeded" means "raypose can run it".

    python -m jobs.checkpoint convert IN OUT
        Writes a clean weights-only file: a plain state_dict with no ``module.`` prefix or wrapper, tensors
        contiguous on the CPU, and the sha256 of the result printed.

Exit codes: 0 success, 2 unusable input (bad path, unsafe or corrupt file, not an SPPE checkpoint).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

__all__ = ["main"]


def _describe(path: str) -> dict:
    from models.checkpoints import (
        KNOWN_CHECKPOINTS,
        inspect_state_dict,
        load_state_dict_strict,
        read_state_dict,
        redact_uri,
    )
    from models.keypoints import keypoint_set_for_num_joints
    from models.sppe import build_sppe

    state, digest = read_state_dict(path)
    info = inspect_state_dict(state)
    kwargs = {} if info.arch.startswith("fastpose_duc") else {"conv_dim": info.conv_dim}
    load_state_dict_strict(build_sppe(info.arch, info.num_joints, **kwargs), state, redact_uri(path))
    try:
        kset = keypoint_set_for_num_joints(info.num_joints).name
    except ValueError:
        kset = None
    known = next((c for c in KNOWN_CHECKPOINTS.values() if c.sha256 == digest), None)
    name = redact_uri(path).rstrip("/").rsplit("/", 1)[-1]
    named = KNOWN_CHECKPOINTS.get(name)
    return {
        "path": redact_uri(path),
        "arch": info.arch,
        "num_joints": info.num_joints,
        "keypoint_set": kset,
        "conv_dim": info.conv_dim,
        "num_params": info.num_params,
        "num_tensors": info.num_tensors,
        "sha256": digest,
        "known_checkpoint": known.filename if known else None,
        "name_matches_known": (
            named.filename if named and named.arch == info.arch and named.num_joints == info.num_joints else None
        ),
    }


def _inspect(args: argparse.Namespace) -> int:
    d = _describe(args.path)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    width = max(len(k) for k in d)
    for k, v in d.items():
        print(f"{k:<{width}}  {v}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    import torch

    from models.checkpoints import inspect_state_dict, read_state_dict

    state, digest = read_state_dict(args.src)
    info = inspect_state_dict(state)  # refuse to write something that is not an SPPE checkpoint
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    torch.save(clean, args.dst)
    with open(args.dst, "rb") as f:
        out_digest = hashlib.sha256(f.read()).hexdigest()
    print(
        f"wrote {args.dst}: {info.arch}, {info.num_joints} joints, {len(clean)} tensors, sha256 {out_digest} "
        f"(source sha256 {digest})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.checkpoint", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="describe a checkpoint and check it loads strictly")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_inspect)
    c = sub.add_parser("convert", help="write a clean weights-only state_dict")
    c.add_argument("src")
    c.add_argument("dst")
    c.set_defaults(func=_convert)
    args = parser.parse_args(argv)

    from models.checkpoints import CheckpointError

    try:
        return args.func(args)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
