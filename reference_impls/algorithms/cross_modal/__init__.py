"""Reference implementations filed under this taxonomy node."""

from reference_impls.algorithms.cross_modal.c2kd import C2KD
from reference_impls.algorithms.cross_modal.supervision_transfer import SupervisionTransfer

__all__ = [
    "C2KD",
    "SupervisionTransfer",
]
