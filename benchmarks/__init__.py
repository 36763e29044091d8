"""Speed and memory benchmarks: each prints a small table and writes JSON (``python -m benchmarks.<name>``)."""

from __future__ import annotations

import json
from pathlib import Path


def write_result(result: dict, out: str | Path) -> Path:
    """Write a benchmark's JSON result (creating the folder) and say where."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return path
