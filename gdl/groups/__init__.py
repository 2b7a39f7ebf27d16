"""Groups, their actions on data, and their representations."""

from gdl.groups._actions import Action, ImageAction, RepAction, SetAction, TrivialAction, TupleAction
from gdl.groups._continuous import E3, O2, O3, SE3, SO2, SO3, expm_skew, so3_basis
from gdl.groups._errors import GroupMismatchError, RepresentationError, ShapeError
from gdl.groups._fields import FieldsAction, FieldSpec
from gdl.groups._finite import CyclicGroup, DihedralGroup, SymmetricGroup, TranslationGroup2D
from gdl.groups._geometric_actions import GraphAction, PointCloudAction, RotateImageAction, smooth_disk_images
from gdl.groups._group import FiniteGroup, Group, GroupElement
from gdl.groups._irreps import O2Irrep, O3Irrep, SO2Irrep, SO3Irrep, wigner_D
from gdl.groups._product import BatchSymmetricGroup, ProductGroup
from gdl.groups._rep import (
    DefiningRep,
    DirectSumRep,
    MatrixRep,
    PermutationRep,
    RegularRep,
    Rep,
    StandardIrrep,
    StandardRep,
    TensorProductRep,
    TrivialRep,
)
from gdl.groups._wallpaper import P4, P4M

__all__ = [
    "Action", "ImageAction", "RepAction", "SetAction", "TrivialAction", "TupleAction",
    "GraphAction", "PointCloudAction", "RotateImageAction", "smooth_disk_images",
    "GroupMismatchError", "RepresentationError", "ShapeError",
    "CyclicGroup", "DihedralGroup", "SymmetricGroup", "TranslationGroup2D", "P4", "P4M",
    "FiniteGroup", "Group", "GroupElement",
    "E3", "O2", "O3", "SE3", "SO2", "SO3", "expm_skew", "so3_basis",
    "O2Irrep", "O3Irrep", "SO2Irrep", "SO3Irrep", "wigner_D",
    "DefiningRep", "DirectSumRep", "MatrixRep", "PermutationRep", "RegularRep", "Rep", "StandardIrrep", "StandardRep",
    "TensorProductRep", "TrivialRep",
    "BatchSymmetricGroup", "ProductGroup", "FieldsAction", "FieldSpec",
]
