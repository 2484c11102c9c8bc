"""Reference implementations filed under this taxonomy node."""

from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.schemes.offline.takd import TAKD

__all__ = [
    "TAKD",
    "OfflineDistiller",
]
