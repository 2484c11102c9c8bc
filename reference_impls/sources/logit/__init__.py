"""Reference implementations filed under this taxonomy node."""

from reference_impls.sources.logit.dkd import DKDLoss
from reference_impls.sources.logit.kd import KDLoss
from reference_impls.sources.logit.logit_standardization import LogitStandardizationLoss
from reference_impls.sources.logit.normkd import NormKDLoss
from reference_impls.sources.logit.ttm import TTMLoss

__all__ = [
    "DKDLoss",
    "KDLoss",
    "LogitStandardizationLoss",
    "NormKDLoss",
    "TTMLoss",
]
