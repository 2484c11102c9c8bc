"""Reference implementations filed under this taxonomy node."""

from reference_impls.modalities._3d.pointdistiller import PointDistillerLoss
from reference_impls.modalities._3d.slidr import SLidRLoss

__all__ = [
    "PointDistillerLoss",
    "SLidRLoss",
]
