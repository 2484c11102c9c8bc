"""Visual recognition beyond classification: dense prediction (segmentation, keypoints)."""

from reference_impls.applications.visual_recognition.cwd import CWDLoss
from reference_impls.applications.visual_recognition.fpd import FPDLoss
from reference_impls.applications.visual_recognition.skd import SKDLoss

__all__ = [
    "CWDLoss",
    "FPDLoss",
    "SKDLoss",
]
