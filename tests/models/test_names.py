"""``models.names`` (torch-free, for configs) lists exactly what the builders build."""

from __future__ import annotations

import torch

from models import names


def test_names_equal_the_builders():
    from models.detectors import DETECTOR_ARCHS
    from models.keypoints import get_keypoint_set
    from models.sppe import SPPE_ARCHS

    assert names.SPPE_ARCH_NAMES == tuple(SPPE_ARCHS)
    assert names.DETECTOR_ARCH_NAMES == tuple(DETECTOR_ARCHS)
    for ks in names.BLAZEPOSE_KEYPOINT_SETS:
        get_keypoint_set(ks)


def test_precision_names_equal_the_actor_dtypes():
    from actors.configs import PRECISION_CHOICES, PRECISION_NAMES
    from actors.sppe import PRECISION_DTYPES

    assert PRECISION_NAMES == tuple(PRECISION_DTYPES)
    assert PRECISION_CHOICES == ("auto", *PRECISION_DTYPES)
    assert all(isinstance(getattr(torch, name), torch.dtype) for name in PRECISION_DTYPES.values())
