"""Reference implementations filed under this taxonomy node."""

from reference_impls.algorithms.attention.cat_kd import CATKD
from reference_impls.algorithms.attention.jacobian_matching import JacobianMatching

__all__ = [
    "CATKD",
    "JacobianMatching",
]
