"""Pieces shared by every reference implementation, written once."""

from reference_impls.common.data import (
    DataSplit,
    iterate_minibatches,
    load_digits_split,
    make_blobs_split,
)
from reference_impls.common.hooks import FeatureTaps
from reference_impls.common.models import (
    ModelOutput,
    TinyCNN,
    TinyMLP,
    count_parameters,
    student_cnn,
    student_mlp,
    teacher_cnn,
    teacher_mlp,
)
from reference_impls.common.training import (
    History,
    Supervised,
    accuracy,
    agreement,
    default_device,
    freeze,
    kl_to_teacher,
    linear_cka,
    predict_logits,
    set_seed,
    train,
    train_supervised,
)

__all__ = [
    "DataSplit",
    "FeatureTaps",
    "History",
    "ModelOutput",
    "Supervised",
    "TinyCNN",
    "TinyMLP",
    "accuracy",
    "agreement",
    "count_parameters",
    "default_device",
    "freeze",
    "iterate_minibatches",
    "kl_to_teacher",
    "linear_cka",
    "load_digits_split",
    "make_blobs_split",
    "predict_logits",
    "set_seed",
    "student_cnn",
    "student_mlp",
    "teacher_cnn",
    "teacher_mlp",
    "train",
    "train_supervised",
]
