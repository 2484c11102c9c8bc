"""Reference implementations filed under this taxonomy node."""

from reference_impls.modalities._3d.pointdistiller import PointDistillerLoss
from reference_impls.modalities._3d.slidr import SLidRLoss, SLidRPretraining

__all__ = [
    "PointDistillerLoss",
    "SLidRLoss",
    "SLidRPretraining",
]
