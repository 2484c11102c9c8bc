"""Reference implementations filed under this taxonomy node."""

from reference_impls.algorithms.adversarial.ard import ARD
from reference_impls.algorithms.adversarial.conditional_adversarial import ConditionalAdversarialKD
from reference_impls.algorithms.adversarial.dafl import DAFL
from reference_impls.algorithms.adversarial.data_free import DigitsGenerator
from reference_impls.algorithms.adversarial.dfad import DFAD
from reference_impls.algorithms.adversarial.gan_distillation import GANDistillation
from reference_impls.algorithms.adversarial.rslad import RSLAD

__all__ = [
    "ARD",
    "DAFL",
    "DFAD",
    "RSLAD",
    "ConditionalAdversarialKD",
    "DigitsGenerator",
    "GANDistillation",
]
