"""Reference implementations filed under this taxonomy node."""

from reference_impls.schemes.self.ban import BornAgain
from reference_impls.schemes.self.byot import BYOT
from reference_impls.schemes.self.ddgsd import DDGSD
from reference_impls.schemes.self.instance_label_smoothing import InstanceSpecificLabelSmoothing
from reference_impls.schemes.self.pskd import PSKD

__all__ = [
    "BYOT",
    "DDGSD",
    "PSKD",
    "BornAgain",
    "InstanceSpecificLabelSmoothing",
]
