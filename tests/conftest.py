"""Shared fixtures: every numerical test runs in float32 and float64 with the checker's tolerance."""

import pytest
import torch

from gdl.testing import default_tolerance


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    """The float dtype of a test's tensors (the test runs once per dtype)."""
    return request.param


@pytest.fixture
def float_tolerance(dtype) -> float:
    """The relative tolerance of :func:`gdl.testing.assert_equivariant` for the test's ``dtype``."""
    return default_tolerance(dtype)
