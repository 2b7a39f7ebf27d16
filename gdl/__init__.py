"""gdl: equivariant deep learning, the package behind the course book.

Sub-packages, one concept each (build on each other in this order):

- :mod:`gdl.groups`: groups, their actions on data, and representations;
- :mod:`gdl.testing`: the one equivariance checker used by tests, notebooks and the grader;
- :mod:`gdl.weight_sharing`: bases of equivariant linear maps (the intertwiner constraint);
- :mod:`gdl.nn`: layers and models, one family per module;
- :mod:`gdl.data`: data sets generated offline;
- :mod:`gdl.architectures`: the registry behind the book's architectures table;
- :mod:`gdl.grading`: the exercises' self-check (``gdl.check("ex01")``) and the instructors' sandboxed grader.
"""

from gdl._runtime import SCALES, Stopwatch, chapter_timer, device, on_colab, scale, scaled, seed_everything

__version__ = "0.1.0"


def check(exercise: str, **kwargs):
    """Run the public tests of an exercise in this notebook: ``gdl.check("ex01")``, the same as
    :func:`gdl.grading.check` (imported only when called)."""
    from gdl.grading import check as _check

    return _check(exercise, **kwargs)


__all__ = ["SCALES", "Stopwatch", "chapter_timer", "check", "device", "on_colab", "scale", "scaled", "seed_everything",
           "__version__"]
