"""DistiLLM's skew reverse KL (Ko et al., 2024): bounded where the reverse KL explodes, training.

Its hand value at the authors' skew, skew 0 giving MiniLLM's reverse KL, and the skew's
range are tested direction by direction with the skew KL's, in ``test_skew_kl.py``.
"""

from __future__ import annotations

import math

import torch

from reference_impls.applications.llm import MiniLLMReverseKLLoss, SkewReverseKLLoss


def test_the_skew_bounds_the_divergence_where_the_reverse_kl_explodes():
    # q / ((1 - a) p + a q) <= 1 / a: bounded where the teacher has no mass
    student = torch.tensor([[[30.0, 0.0, 0.0]]], dtype=torch.float64)
    teacher = torch.tensor([[[0.0, 30.0, 0.0]]], dtype=torch.float64)
    assert MiniLLMReverseKLLoss()(student, teacher) > 25
    assert SkewReverseKLLoss()(student, teacher) <= math.log(10) + 1e-12


def test_a_distilled_student_moves_toward_the_teacher_more_than_one_trained_on_the_data(
    distillation_run,
):
    kls = distillation_run(SkewReverseKLLoss)
    assert kls["distilled"] < 0.7 * kls["data alone"], kls
