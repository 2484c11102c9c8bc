"""Reference implementations filed under this taxonomy node."""

from reference_impls.algorithms.multi_teacher.averaged_ensemble import AveragedEnsembleKD
from reference_impls.algorithms.multi_teacher.ca_mkd import CAMKD
from reference_impls.algorithms.multi_teacher.uhc import UHC

__all__ = [
    "CAMKD",
    "UHC",
    "AveragedEnsembleKD",
]
