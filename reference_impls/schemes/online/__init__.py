"""Reference implementations filed under this taxonomy node."""

from reference_impls.schemes.online.dml import DML
from reference_impls.schemes.online.kdcl import KDCL
from reference_impls.schemes.online.one import ONE

__all__ = [
    "DML",
    "KDCL",
    "ONE",
]
