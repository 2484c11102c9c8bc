"""Reference implementations filed under this taxonomy node."""

from reference_impls.algorithms.adaptive.channel_distillation import ChannelDistillation
from reference_impls.algorithms.adaptive.ctkd import CTKDLoss
from reference_impls.algorithms.adaptive.eskd import ESKD

__all__ = [
    "ESKD",
    "CTKDLoss",
    "ChannelDistillation",
]
