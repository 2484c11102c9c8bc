"""Reference implementations filed under this taxonomy node."""

from reference_impls.modalities.text.distilled_bilstm import (
    DistilledBiLSTMLoss,
    augment_transfer_set,
)
from reference_impls.modalities.text.seq_kd import SequenceKD, teacher_beams
from reference_impls.modalities.text.word_kd import WordKDLoss

__all__ = [
    "DistilledBiLSTMLoss",
    "SequenceKD",
    "WordKDLoss",
    "augment_transfer_set",
    "teacher_beams",
]
