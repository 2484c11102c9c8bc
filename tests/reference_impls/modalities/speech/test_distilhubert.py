"""DistilHuBERT: the per-head loss by hand, the heads, the padding, the training effect.

The contract every implementation meets (construction at defaults, gradients, determinism,
state_dict, CPU/CUDA and bf16) is checked for all of them by
tests/reference_impls/test_contracts.py; this file holds only what is specific to
DistilHuBERTLoss. Equality with the authors' compute_loss and heads is recorded in
tests/official_runs/distilhubert.json (scripts/verify_official.py).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.common.speech import FrameEncoder
from reference_impls.modalities.speech.distilhubert import DistilHuBERTLoss, head_losses


def test_hand_computed_value():
    # One frame, one head, D = 2: prediction (1, 0), target (1, 1).
    # L1 = (|1 - 1| + |0 - 1|) / 2 = 1/2; cos = 1 / sqrt(2);
    # -log sigma(cos) = log(1 + exp(-1/sqrt 2)); total (lambda = 1) = 1/2 + that.
    prediction = torch.tensor([[[1.0, 0.0]]])
    target = torch.tensor([[[1.0, 1.0]]])
    distance, cosine = head_losses(prediction, target)
    assert float(distance) == pytest.approx(0.5)
    assert float(cosine) == pytest.approx(math.log(1 + math.exp(-1 / math.sqrt(2))))
    distance, _ = head_losses(prediction, target, "l2")
    assert float(distance) == pytest.approx(0.5)  # ((0)^2 + (1)^2) / 2


def test_a_perfect_prediction_leaves_log_of_one_plus_one_over_e():
    # The cosine term is -log sigma(cos), smallest at cos = 1 where it is log(1 + 1/e), not 0:
    # the L1 term vanishes, the cosine term does not.
    target = torch.randn(5, 3, 8, generator=torch.Generator().manual_seed(0))
    distance, cosine = head_losses(target.clone(), target)
    assert torch.allclose(distance, torch.zeros(3))
    assert torch.allclose(cosine, torch.full((3,), math.log(1 + math.exp(-1))))


def test_loss_is_the_mean_over_heads_as_in_their_code():
    # total = mean_n L1_n + lambda mean_n cos_n (the code's means, 1/N of the paper's sum)
    generator = torch.Generator().manual_seed(1)
    loss = DistilHuBERTLoss(6, 4, num_heads=2, cosine_weight=0.5)
    student = torch.randn(2, 5, 6, generator=generator)
    teachers = [torch.randn(2, 5, 4, generator=generator) for _ in range(2)]
    mask = torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        distance, cosine = loss.terms(student, teachers, mask)
        predictions = loss.heads(student)  # [B, T, N, D]
    for n in range(2):
        l1 = (predictions[:, :, n] - teachers[n]).abs().mean()
        cos = -F.logsigmoid(F.cosine_similarity(predictions[:, :, n], teachers[n], dim=-1)).mean()
        assert float(distance[n]) == pytest.approx(float(l1), rel=1e-5)
        assert float(cosine[n]) == pytest.approx(float(cos), rel=1e-5)
    total = distance.mean() + 0.5 * cosine.mean()
    with torch.no_grad():
        assert float(loss(student, teachers, mask)) == pytest.approx(float(total), rel=1e-6)
        stacked = torch.stack(teachers, 1)  # [B, N, T, D] is accepted as well
        assert float(loss(student, stacked, mask)) == pytest.approx(float(total), rel=1e-6)


def test_heads_are_separate_linear_maps_after_a_shared_expansion():
    loss = DistilHuBERTLoss(4, 3, num_heads=2, inter_dim=5)
    heads = loss.heads
    hidden = torch.randn(7, 4)
    inner = F.gelu(heads.expand(hidden)).reshape(7, 2, 5)
    for n in range(2):
        expected = inner[:, n] @ heads.weight[n] + heads.bias[n]
        assert torch.allclose(heads(hidden)[:, n], expected, atol=1e-6)
    assert heads.weight.abs().max() <= 5**-0.5  # SplitLinear's init: uniform in +-d_i^-1/2


def test_padded_frames_never_contribute():
    generator = torch.Generator().manual_seed(2)
    loss = DistilHuBERTLoss(6, 4)
    student = torch.randn(3, 7, 6, generator=generator, requires_grad=True)
    teachers = [torch.randn(3, 7, 4, generator=generator) for _ in range(3)]
    mask = torch.arange(7)[None, :] < torch.tensor([7, 2, 5])[:, None]
    value = loss(student, teachers, mask)
    (gradient,) = torch.autograd.grad(value, student)
    assert torch.all(gradient[~mask] == 0)
    noisy = student.detach().clone()
    noisy[~mask] = float("nan")
    noisy_teachers = [t.clone() for t in teachers]
    for t in noisy_teachers:
        t[~mask] = 1e3
    assert float(loss(noisy, noisy_teachers, mask).detach()) == pytest.approx(float(value.detach()))


def test_bad_inputs_are_named():
    loss = DistilHuBERTLoss(6, 4, num_heads=2)
    student = torch.zeros(2, 5, 6)
    teachers = [torch.zeros(2, 5, 4)] * 2
    mask = torch.ones(2, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="num_heads=2 teacher layers"):
        loss(student, teachers[:1], mask)
    with pytest.raises(ValueError, match=r"teacher_hiddens must be 2 layers of shape \[2, 5, 4\]"):
        loss(student, [torch.zeros(2, 6, 4)] * 2, mask)
    with pytest.raises(ValueError, match=r"mask must be a boolean mask of shape \[2, 5\]"):
        loss(student, teachers, torch.ones(5, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty sequence"):
        loss(student, teachers, torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"student_hidden must have shape \[B, T, d\]"):
        loss(torch.zeros(2, 6), teachers, mask)
    with pytest.raises(ValueError, match="loss_type"):
        DistilHuBERTLoss(6, 4, loss_type="cosine")


def test_distillation_brings_student_predictions_close_to_the_teacher_layers():
    # A random 3-layer teacher encoder; a 1-layer student and the heads trained 60 steps
    # with the loss. On held-out inputs the heads' cosine to each teacher layer rises well
    # above the untrained same-seed student's.
    torch.manual_seed(0)
    teacher = FrameEncoder(n_mels=8, dim=16, layers=3, heads=2, ffn=32).eval()
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(80, 12, 8, generator=generator)
    lengths = torch.randint(6, 13, (80,), generator=generator)
    mask = torch.arange(12)[None, :] < lengths[:, None]
    with torch.no_grad():
        targets = teacher(x, mask).hidden_states[1:]

    def cosine_after(steps: int) -> float:
        torch.manual_seed(1)
        student = FrameEncoder(n_mels=8, dim=16, layers=1, heads=2, ffn=32)
        loss = DistilHuBERTLoss(16, 16, num_heads=3)
        optimizer = torch.optim.Adam([*student.parameters(), *loss.parameters()], lr=3e-3)
        for step in range(steps):
            rows = torch.arange(step % 4 * 16, step % 4 * 16 + 16)
            value = loss(student(x[rows], mask[rows]).last, [t[rows] for t in targets], mask[rows])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        with torch.no_grad():
            rows = slice(64, 80)
            _, cosine = loss.terms(
                student(x[rows], mask[rows]).last, [t[rows] for t in targets], mask[rows]
            )
        return float(cosine.mean())  # -log sigma(cos): lower is a higher cosine

    assert cosine_after(60) < cosine_after(0) - 0.1
