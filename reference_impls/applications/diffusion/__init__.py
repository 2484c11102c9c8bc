"""Reference implementations filed under this taxonomy node."""

from reference_impls.applications.diffusion.add import AdversarialDiffusionDistillation
from reference_impls.applications.diffusion.consistency import ConsistencyDistillation
from reference_impls.applications.diffusion.dmd import DistributionMatchingDistillation
from reference_impls.applications.diffusion.progressive import ProgressiveDistillation

__all__ = [
    "AdversarialDiffusionDistillation",
    "ConsistencyDistillation",
    "DistributionMatchingDistillation",
    "ProgressiveDistillation",
]
