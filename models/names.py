"""What a configuration may name, without building anything: network architectures, heatmap decoders, BlazePose's
keypoint sets. Torch-free, so job drivers validate configurations (``actors.configs``) without importing torch
(1.0–1.9 s per process, issue 13). The modules that build the networks keep the builders; tests check that their
names equal these (``tests/models/test_names.py``).
"""

from __future__ import annotations

__all__ = [
    "SPPE_ARCH_NAMES",
    "DETECTOR_ARCH_NAMES",
    "BLAZEPOSE_KEYPOINT_SETS",
    "DECODE_METHODS",
    "COMBINED_INTEGRAL_CHANNELS",
    "combined_integral_channels",
]

#: ``models.sppe.SPPE_ARCHS``: AlphaPose's heatmap SPPEs (FastPose family, SimplePose, HRNet, HarDNet).
SPPE_ARCH_NAMES: tuple[str, ...] = (
    "fastpose_res18",
    "fastpose_res34",
    "fastpose_res50",
    "fastpose_res101",
    "fastpose_res152",
    "fastpose_duc_res152",
    "fastpose_duc_res50_shuffle",
    "fastpose_dcn_res50",
    "simplepose_res50",
    "hrnet_w32",
    "hardnet68",
    "hardnet85",
)
#: ``models.detectors.DETECTOR_ARCHS``: person detectors, and detections read from a file ("precomputed").
DETECTOR_ARCH_NAMES: tuple[str, ...] = (
    "fasterrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "ssdlite320_mobilenet_v3_large",
    "yolov3_spp",
    "yolo",
    "precomputed",
)
#: The keypoint sets BlazePose's 33 landmarks map to (``models.blazepose.landmarks_to_keypoint_set``).
BLAZEPOSE_KEYPOINT_SETS: tuple[str, ...] = ("coco17", "halpe26")
#: ``models.heatmaps.decode_heatmaps`` methods.
DECODE_METHODS: tuple[str, ...] = ("alphapose", "dark", "integral", "combined")

#: Channels decoded by integral regression in AlphaPose's "Combined" models, by keypoint count: the face and hands
#: (110 = 68 + 42) of Halpe-136 and COCO-WholeBody-133, the hands (42) of Halpe-68 (``face_hand_num`` in
#: ``alphapose/utils/writer.py`` L115–137).
COMBINED_INTEGRAL_CHANNELS: dict[int, int] = {136: 110, 133: 110, 68: 42}


def combined_integral_channels(num_keypoints: int, integral_channels: int | None = None) -> int:
    """How many trailing channels the ``"combined"`` decoder sends to the integral decoder.

    ``integral_channels`` when given (``0 ≤ n ≤ K``), else AlphaPose's writer default for ``num_keypoints``
    (``COMBINED_INTEGRAL_CHANNELS``). Other keypoint counts need an explicit value: AlphaPose's writer keeps
    ``face_hand_num = 110`` for them, so for K < 110 (17, 21, 26) its ``[:-110]`` / ``[-110:]`` slices send *every*
    channel to the integral decoder — pass ``integral_channels=K`` (or use ``method="integral"``) to reproduce that.

    Raises:
        ValueError: unknown K without an explicit value, or a value outside ``[0, K]``.
    """
    if integral_channels is None:
        if num_keypoints not in COMBINED_INTEGRAL_CHANNELS:
            raise ValueError(
                f"combined decoding has no default split for K = {num_keypoints} keypoints (AlphaPose defines "
                f"K = 136 and 133 → 110 integral channels, K = 68 → 42); pass integral_channels explicitly"
            )
        return COMBINED_INTEGRAL_CHANNELS[num_keypoints]
    if isinstance(integral_channels, bool) or int(integral_channels) != integral_channels:
        raise ValueError(f"integral_channels must be an integer, got {integral_channels!r}")
    if not 0 <= int(integral_channels) <= num_keypoints:
        raise ValueError(f"integral_channels must lie in [0, {num_keypoints}], got {integral_channels}")
    return int(integral_channels)
