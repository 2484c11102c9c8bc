"""Reference implementations filed under this taxonomy node."""

from reference_impls.applications.diffusion.add import (
    AdversarialDiffusionDistillation,
    PointDiscriminator,
)
from reference_impls.applications.diffusion.consistency import ConsistencyDistillation
from reference_impls.applications.diffusion.dmd import (
    DistributionMatchingDistillation,
    OneStepGenerator,
)
from reference_impls.applications.diffusion.progressive import ProgressiveDistillation

__all__ = [
    "AdversarialDiffusionDistillation",
    "ConsistencyDistillation",
    "DistributionMatchingDistillation",
    "OneStepGenerator",
    "PointDiscriminator",
    "ProgressiveDistillation",
]
