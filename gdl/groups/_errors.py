"""Errors raised for bad input: each message names what was expected and what was received."""

__all__ = ["GroupMismatchError", "ShapeError", "RepresentationError"]


class GroupMismatchError(ValueError):
    """An element, representation or action of one group was used where another group was expected."""


class ShapeError(ValueError):
    """A tensor does not have the shape that an action, representation or layer expects."""


class RepresentationError(ValueError):
    """Matrices that do not form a representation, or representations that do not fit together."""
