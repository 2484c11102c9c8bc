"""Reference implementations filed under this taxonomy node."""

from reference_impls.modalities.multi_view.pointmcd import PointMCDLoss

__all__ = [
    "PointMCDLoss",
]
