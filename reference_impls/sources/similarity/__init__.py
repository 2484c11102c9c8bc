"""Reference implementations filed under this taxonomy node."""

from reference_impls.sources.similarity.cc import CCLoss
from reference_impls.sources.similarity.dist import DISTLoss
from reference_impls.sources.similarity.fsp import FSPLoss
from reference_impls.sources.similarity.ickd import ICKDLoss
from reference_impls.sources.similarity.irg import IRGLoss
from reference_impls.sources.similarity.pkt import PKTLoss
from reference_impls.sources.similarity.rkd import RKDLoss
from reference_impls.sources.similarity.sp import SPLoss

__all__ = [
    "CCLoss",
    "DISTLoss",
    "FSPLoss",
    "ICKDLoss",
    "IRGLoss",
    "PKTLoss",
    "RKDLoss",
    "SPLoss",
]
