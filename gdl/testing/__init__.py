"""The one equivariance checker, shared by tests, notebooks and the grader."""

from gdl.testing._equivariance import (
    MAX_EXHAUSTIVE,
    EquivarianceReport,
    assert_equivariant,
    assert_invariant,
    default_tolerance,
    equivariance_error,
)

__all__ = ["MAX_EXHAUSTIVE", "EquivarianceReport", "assert_equivariant", "assert_invariant",
           "default_tolerance", "equivariance_error"]
