"""Visual recognition beyond classification: dense prediction (segmentation, keypoints, detection)."""

from reference_impls.applications.visual_recognition.cwd import CWDLoss
from reference_impls.applications.visual_recognition.fgd import FGDLoss
from reference_impls.applications.visual_recognition.fpd import FPDLoss
from reference_impls.applications.visual_recognition.skd import SKDLoss

__all__ = [
    "CWDLoss",
    "FGDLoss",
    "FPDLoss",
    "SKDLoss",
]
