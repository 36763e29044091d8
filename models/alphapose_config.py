"""AlphaPose's YAML model configs → raypose networks: what a config *builds*, its keypoint set and its decoder.

A team moving from AlphaPose brings ``configs/<dataset>/<backbone>/*.yaml`` and the matching ``.pth``.
``build_from_alphapose_config`` reads the config's ``MODEL``, ``DATA_PRESET``, ``DATASET`` and ``LOSS`` sections the
way AlphaPose's builders do (``alphapose/models/builder.py`` → the class named by ``MODEL.TYPE``) and returns the
network, whose state-dict keys and shapes equal AlphaPose's for that config, plus a small frozen spec.

Mapping (AlphaPose @c60106d):

* ``MODEL.TYPE: FastPose`` → ``fastpose_res{NUM_LAYERS}`` with ``CONV_DIM`` (default 128,
  ``alphapose/models/fastpose.py`` L19–22), or ``fastpose_dcn_res50`` when ``DCN`` and ``STAGE_WITH_DCN`` are set.
  FastPose reads only ``CONV_DIM``, ``DCN``, ``STAGE_WITH_DCN`` and ``NUM_LAYERS``: the Halpe-136 and
  COCO-WholeBody "res152 -duc" configs say ``TYPE: FastPose`` and build a plain FastPose-152 whatever their
  ``BACKBONE``/``STAGE*`` keys say, and that is what their checkpoints hold.
* ``MODEL.TYPE: FastPose_DUC`` → ``fastpose_duc_res152`` (``BACKBONE: se-resnet``, 152 layers) or
  ``fastpose_duc_res50_shuffle`` (``BACKBONE: shuffle``, 50 layers); DUC stages must be 4/2/1 convs.
* ``MODEL.TYPE: SimplePose`` → ``simplepose_res50``; ``PoseHighResolutionNet`` (W32 stages) → ``hrnet_w32``;
  ``HarDNetPose`` with ``NUM_LAYERS`` 68 / 85 → ``hardnet68`` / ``hardnet85``.
* Decoder from ``LOSS.TYPE`` (``alphapose/utils/transforms.py`` ``get_func_heatmap_to_coord``): ``MSELoss`` →
  heatmap (``alphapose``), ``L1JointRegression`` → ``integral``, ``Combined`` → ``combined``.
* Keypoint set from ``DATA_PRESET.NUM_JOINTS``: 17 coco17, 26 halpe26, 136 halpe136, 133 coco_wholebody133,
  68 halpe68, 21 hand21.

Two checkpoints of AlphaPose's ``docs/MODEL_ZOO.md`` are linked to the wrong YAML: the Halpe-136 "Heatmap" row links
the ``-regression`` YAML, and the COCO-WholeBody DCN "Symmetric Integral" row links ``-combined``. Their keys are
identical, so a strict load cannot tell: the decoder then is wrong. Tell them apart by the checkpoint file name
(``..._regression.pth`` vs ``...heatmap...``) or by the raw outputs: heatmap models output ≈ 0 away from joints,
regression models strongly negative logits; ``heatmaps.output_kind`` measures that, and the SPPE actor warns when
the outputs contradict the decoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = [
    "AlphaPoseConfigError",
    "AlphaPoseModelSpec",
    "read_alphapose_config",
    "build_from_alphapose_config",
    "KEYPOINT_SET_BY_JOINTS",
]

#: DATA_PRESET.NUM_JOINTS → raypose keypoint set (the counts AlphaPose's writer decodes whole, writer.py L115–126).
KEYPOINT_SET_BY_JOINTS = {
    17: "coco17",
    26: "halpe26",
    136: "halpe136",
    133: "coco_wholebody133",
    68: "halpe68",
    21: "hand21",
}
_DECODE_BY_LOSS = {"MSELoss": "alphapose", "L1JointRegression": "integral", "Combined": "combined"}


class AlphaPoseConfigError(ValueError):
    """An AlphaPose config raypose cannot build, with the reason and the config's name."""


@dataclass(frozen=True)
class AlphaPoseModelSpec:
    """What an AlphaPose config builds.

    Attributes:
        arch: the ``models.sppe.SPPE_ARCHS`` name.
        num_joints: output channels K (``DATA_PRESET.NUM_JOINTS``).
        keypoint_set: ``models.keypoints`` set of those channels.
        decode: ``models.heatmaps`` method: ``alphapose`` (heatmap), ``integral`` or ``combined``.
        loss_type: ``LOSS.TYPE`` as written (``MSELoss``, ``L1JointRegression``, ``Combined``).
        conv_dim: FastPose's ``CONV_DIM`` (None for other architectures).
        source: where the config came from (a path, or ``<mapping>``).
    """

    arch: str
    num_joints: int
    keypoint_set: str
    decode: str
    loss_type: str
    conv_dim: int | None = None
    source: str = "<mapping>"

    def build_kwargs(self) -> dict:
        """Keyword arguments of ``models.sppe.build_sppe`` beyond arch and joints."""
        return {} if self.conv_dim is None else {"conv_dim": self.conv_dim}

    @property
    def regression_pose_nms(self) -> bool:
        """Whether AlphaPose's pose NMS switches to its whole-body regression constants for this model
        (K = 133/136 and a loss other than MSELoss: ``pPose_nms.py`` L228–237, ``writer.py`` L64)."""
        return self.num_joints in (133, 136) and self.loss_type != "MSELoss"


def _get(cfg: Mapping, *path: str, default: Any = None) -> Any:
    node: Any = cfg
    for p in path:
        if not isinstance(node, Mapping) or p not in node:
            return default
        node = node[p]
    return node


def read_alphapose_config(config: str | Mapping[str, Any]) -> AlphaPoseModelSpec:
    """The spec of an AlphaPose YAML config (a local path or fsspec URI, or the parsed mapping). Raises
    ``AlphaPoseConfigError`` naming the config and the key when it asks for something raypose does not build."""
    if isinstance(config, Mapping):
        cfg, source = config, "<mapping>"
    else:
        import fsspec
        import yaml

        source = str(config)
        try:
            with fsspec.open(source, "rt") as f:
                cfg = yaml.safe_load(f)
        except FileNotFoundError:
            raise AlphaPoseConfigError(f"{source}: AlphaPose config not found") from None
        except yaml.YAMLError as e:
            raise AlphaPoseConfigError(f"{source}: not valid YAML ({e})") from None
        if not isinstance(cfg, Mapping):
            raise AlphaPoseConfigError(f"{source}: an AlphaPose config is a YAML mapping")
    return _spec_from_mapping(cfg, source)


def _spec_from_mapping(cfg: Mapping[str, Any], source: str) -> AlphaPoseModelSpec:
    def fail(msg: str) -> AlphaPoseConfigError:
        return AlphaPoseConfigError(f"{source}: {msg}")

    model_type = _get(cfg, "MODEL", "TYPE")
    if not model_type:
        raise fail("no MODEL.TYPE: not an AlphaPose model config")
    k = _get(cfg, "DATA_PRESET", "NUM_JOINTS")
    if not isinstance(k, int) or k not in KEYPOINT_SET_BY_JOINTS:
        raise fail(
            f"DATA_PRESET.NUM_JOINTS={k!r}: raypose decodes {', '.join(map(str, KEYPOINT_SET_BY_JOINTS))} keypoints"
        )
    for key, want in (("IMAGE_SIZE", [256, 192]), ("HEATMAP_SIZE", [64, 48])):
        got = _get(cfg, "DATA_PRESET", key)
        if got is not None and list(got) != want:
            raise fail(f"DATA_PRESET.{key}={list(got)}: raypose's crops and heatmaps are {want}")
    loss = _get(cfg, "LOSS", "TYPE", default="MSELoss")
    if loss not in _DECODE_BY_LOSS:
        raise fail(f"LOSS.TYPE={loss!r}: raypose decodes {', '.join(_DECODE_BY_LOSS)}")
    norm = _get(cfg, "LOSS", "NORM_TYPE", default="sigmoid")
    if loss != "MSELoss" and norm != "sigmoid":
        raise fail(f"LOSS.NORM_TYPE={norm!r}: raypose's integral decoder normalises with a sigmoid, as every config")
    if loss == "Combined" and k not in (133, 136, 68):
        raise fail(f"LOSS.TYPE=Combined with {k} joints: AlphaPose's split is defined for 133, 136 and 68")
    layers = _get(cfg, "MODEL", "NUM_LAYERS")
    conv_dim = None
    if model_type == "FastPose":
        conv_dim = int(_get(cfg, "MODEL", "CONV_DIM", default=128))
        if conv_dim not in (128, 256):
            raise fail(f"MODEL.CONV_DIM={conv_dim}: FastPose's DUC head is built for 128 or 256")
        stages = _get(cfg, "MODEL", "STAGE_WITH_DCN")
        dcn = _get(cfg, "MODEL", "DCN") is not None and stages is not None and any(stages)
        if dcn:
            if list(stages) != [False, True, True, True] or layers != 50:
                raise fail(f"DCN in stages {stages} of a {layers}-layer FastPose: raypose builds res50, stages 2–4")
            if _get(cfg, "MODEL", "DCN", "MODULATED", default=False):
                raise fail("MODEL.DCN.MODULATED: raypose builds AlphaPose's DCNv1 (unmodulated) only")
            arch = "fastpose_dcn_res50"
        elif layers in (18, 34, 50, 101, 152):
            arch = f"fastpose_res{layers}"
        else:
            raise fail(f"MODEL.NUM_LAYERS={layers!r} for FastPose")
    elif model_type == "FastPose_DUC":
        backbone = _get(cfg, "MODEL", "BACKBONE")
        convs = [_get(cfg, "MODEL", f"STAGE{i}", "NUM_CONV") for i in (1, 2, 3)]
        if convs != [4, 2, 1]:
            raise fail(f"FastPose_DUC with DUC stages {convs}: raypose builds AlphaPose's 4/2/1")
        if backbone == "se-resnet" and layers == 152:
            arch = "fastpose_duc_res152"
        elif backbone == "shuffle" and layers == 50:
            arch = "fastpose_duc_res50_shuffle"
        else:
            raise fail(
                f"FastPose_DUC with BACKBONE={backbone!r}, NUM_LAYERS={layers!r}: raypose builds "
                "se-resnet 152 and shuffle 50"
            )
    elif model_type == "SimplePose":
        if layers != 50:
            raise fail(f"SimplePose with NUM_LAYERS={layers!r}: raypose builds ResNet-50")
        arch = "simplepose_res50"
    elif model_type == "PoseHighResolutionNet":
        channels = _get(cfg, "MODEL", "STAGE4", "NUM_CHANNELS")
        if channels is not None and list(channels) != [32, 64, 128, 256]:
            raise fail(f"HRNet with STAGE4.NUM_CHANNELS={list(channels)}: raypose builds W32")
        arch = "hrnet_w32"
    elif model_type == "HarDNetPose":
        if layers not in (68, 85):
            raise fail(f"HarDNetPose with NUM_LAYERS={layers!r}: raypose builds 68 and 85")
        arch = f"hardnet{layers}"
    else:
        raise fail(f"MODEL.TYPE={model_type!r} is not one of AlphaPose's 2D models raypose builds")
    return AlphaPoseModelSpec(
        arch=arch,
        num_joints=k,
        keypoint_set=KEYPOINT_SET_BY_JOINTS[k],
        decode=_DECODE_BY_LOSS[loss],
        loss_type=loss,
        conv_dim=conv_dim,
        source=source,
    )


def build_from_alphapose_config(config: str | Mapping[str, Any]) -> tuple[nn.Module, AlphaPoseModelSpec]:
    """AlphaPose config (path, fsspec URI or parsed mapping) → (network with PyTorch-default weights, spec).

    The network's state-dict keys and shapes are AlphaPose's for that config, so ``load_checkpoint(net, pth)``
    loads the matching checkpoint strictly; it is in training mode, like ``build_sppe``'s.
    """
    from models.sppe import build_sppe

    spec = read_alphapose_config(config)
    return build_sppe(spec.arch, spec.num_joints, **spec.build_kwargs()), spec
