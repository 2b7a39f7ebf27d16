"""gdl: equivariant deep learning, the package behind the course book.

Sub-packages, one concept each (build on each other in this order):

- :mod:`gdl.groups`: groups, their actions on data, and representations;
- :mod:`gdl.testing`: the one equivariance checker used by tests, notebooks and the grader;
- :mod:`gdl.weight_sharing`: bases of equivariant linear maps (the intertwiner constraint);
- :mod:`gdl.nn`: layers and models, one family per module;
- :mod:`gdl.data`: data sets generated offline;
- :mod:`gdl.architectures`: the registry behind the book's architectures table.
"""

from gdl._runtime import SCALES, device, on_colab, scale, scaled, seed_everything

__version__ = "0.1.0"

__all__ = ["SCALES", "device", "on_colab", "scale", "scaled", "seed_everything", "__version__"]
