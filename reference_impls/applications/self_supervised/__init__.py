"""Reference implementations filed under this taxonomy node."""

from reference_impls.applications.self_supervised.byol import BYOL
from reference_impls.applications.self_supervised.compress import CompRess
from reference_impls.applications.self_supervised.dino import DINO
from reference_impls.applications.self_supervised.seed import SEED

__all__ = [
    "BYOL",
    "DINO",
    "SEED",
    "CompRess",
]
