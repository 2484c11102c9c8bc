"""Reference implementations filed under this taxonomy node."""

from reference_impls.algorithms.contrastive.crcd import CRCDLoss
from reference_impls.algorithms.contrastive.crd import CRDLoss

__all__ = [
    "CRCDLoss",
    "CRDLoss",
]
