"""Reference implementations filed under this taxonomy node."""

from reference_impls.sources.feature.ab import ABLoss
from reference_impls.sources.feature.at import ATLoss
from reference_impls.sources.feature.fitnets import FitNetsLoss
from reference_impls.sources.feature.ft import FTLoss
from reference_impls.sources.feature.mgd import MGDLoss
from reference_impls.sources.feature.nst import NSTLoss
from reference_impls.sources.feature.ofd import OFDLoss
from reference_impls.sources.feature.reviewkd import ReviewKDLoss
from reference_impls.sources.feature.simkd import SimKD

__all__ = [
    "ABLoss",
    "ATLoss",
    "FTLoss",
    "FitNetsLoss",
    "MGDLoss",
    "NSTLoss",
    "OFDLoss",
    "ReviewKDLoss",
    "SimKD",
]
