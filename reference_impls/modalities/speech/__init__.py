"""Reference implementations filed under this taxonomy node."""

from reference_impls.modalities.speech.ctc_frame_kd import CTCFrameKDLoss
from reference_impls.modalities.speech.distilhubert import DistilHuBERTLoss

__all__ = [
    "CTCFrameKDLoss",
    "DistilHuBERTLoss",
]
