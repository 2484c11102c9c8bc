"""Reference implementations filed under this taxonomy node."""

from reference_impls.modalities.multi_view.pointmcd import PointMCD, PointMCDLoss

__all__ = [
    "PointMCD",
    "PointMCDLoss",
]
