"""C2KD (Huo et al., 2024): Kendall's tau, the non-target KL by hand, selection, the teacher copy, training."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch
from torch import nn

from reference_impls.algorithms.cross_modal.c2kd import (
    C2KD,
    Proxy,
    kendall_tau_b,
    non_target_kl,
)
from reference_impls.common import (
    ModelOutput,
    Supervised,
    predict_logits,
    student_cnn,
    teacher_cnn,
    train,
)
from reference_impls.common.data import load_digits_split
from reference_impls.common.paired_views import load_paired_digits
from reference_impls.common.testing import pretrained_digits_teacher


class FixedOutputs(nn.Module):
    """A stand-in network with given logits and one given "feature" (the proxy's input)."""

    def __init__(self, logits: torch.Tensor, proxy_input: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.proxy_input = logits, proxy_input

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.logits, [self.proxy_input])


def with_given_proxies(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    student_proxy: torch.Tensor,
    teacher_proxy: torch.Tensor,
    **options,
) -> C2KD:
    """A C2KD whose four logits are given: identity proxies read them as the stage's features."""
    classes = student_logits.shape[1]
    procedure = C2KD(
        FixedOutputs(student_logits, student_proxy),
        FixedOutputs(teacher_logits, teacher_proxy),
        num_classes=classes,
        stage=-1,
        student_width=1,
        teacher_width=1,
        **options,
    )
    procedure.teacher_model = FixedOutputs(teacher_logits, teacher_proxy)
    procedure.student_proxy, procedure.teacher_proxy = nn.Identity(), nn.Identity()
    return procedure


def test_kendall_tau_b_is_scipys_with_ties_and_nan_for_a_constant_row():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(6, 10, generator=generator, dtype=torch.float64)
    b = a + torch.randn(6, 10, generator=generator, dtype=torch.float64)
    a[0, :4] = 1.0  # ties on one side
    b[1, 2:6] = -2.0  # ties on the other
    ours = kendall_tau_b(a, b)
    expected = [scipy.stats.kendalltau(a[i].numpy(), b[i].numpy())[0] for i in range(6)]
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64))
    assert kendall_tau_b(torch.ones(1, 5), torch.randn(1, 5)).isnan().all()
    assert kendall_tau_b(a[:1], -a[:1]).item() == pytest.approx(-1.0)


def test_non_target_kl_by_hand():
    # target 0 is zeroed, not removed: teacher [7, ln 2, 0] -> softmax of [0, ln 2, 0] =
    # [1/4, 1/2, 1/4]; student [-3, 0, 0] -> [0, 0, 0] -> 1/3 each; the KL is
    # 2 * 1/4 * ln(3/4) + 1/2 * ln(3/2) = 1/2 * ln(9/8); the second row is not selected
    teacher = torch.tensor([[7.0, math.log(2.0), 0.0], [1.0, 2.0, 3.0]])
    student = torch.tensor([[-3.0, 0.0, 0.0], [3.0, 2.0, 1.0]])
    value = non_target_kl(student, teacher, torch.tensor([0, 0]), torch.tensor([1.0, 0.0]))
    assert value.item() == pytest.approx(0.5 * math.log(9 / 8) / 2)  # averaged over the batch


def test_the_loss_is_its_terms_written_out():
    generator = torch.Generator().manual_seed(1)
    z_s, z_t, q_s, q_t = (torch.randn(8, 5, generator=generator) * 2 for _ in range(4))
    target = torch.randint(0, 5, (8,), generator=generator)
    terms = with_given_proxies(z_s, z_t, q_s, q_t)(torch.zeros(8, 2, 1, 1), target)

    def kl(source, learner):  # KL(softmax(source) || softmax(learner)), batch mean
        p = source.softmax(1)
        return (p * (p.log() - learner.log_softmax(1))).sum(1).mean()

    selected = (kendall_tau_b(q_t, q_s) > 0).float()
    written_out = (
        nn.functional.cross_entropy(z_s, target)
        + nn.functional.cross_entropy(z_t, target)
        + kl(z_t, q_t) + kl(q_t, z_t) + kl(z_s, q_s) + kl(q_s, z_s)
        + non_target_kl(q_s, q_t, target, selected) + non_target_kl(q_t, q_s, target, selected)
    )  # fmt: skip
    torch.testing.assert_close(terms["loss"], written_out)
    assert terms["selected"].item() == selected.mean().item()


def test_on_the_fly_selection_drops_the_samples_whose_proxies_disagree():
    generator = torch.Generator().manual_seed(2)
    z_s, z_t, q = (torch.randn(6, 5, generator=generator) for _ in range(3))
    target = torch.randint(0, 5, (6,), generator=generator)
    frames = torch.zeros(6, 2, 1, 1)
    agreeing = with_given_proxies(z_s, z_t, q, 2 * q + 1)(frames, target)
    reversed_ranking = with_given_proxies(z_s, z_t, q, -q)(frames, target)
    assert agreeing["selected"].item() == 1.0 and reversed_ranking["selected"].item() == 0.0
    # with no sample selected, the proxies' cross-modal terms vanish: only the rest is left
    leaves = [t.clone().requires_grad_() for t in (z_s, z_t, q, -q)]
    with_given_proxies(*leaves)(frames, target)["loss"].backward()
    assert leaves[2].grad is not None
    strict = with_given_proxies(z_s, z_t, q, 2 * q + 1, kendall_threshold=0.999)(frames, target)
    assert strict["selected"].item() == 1.0  # a perfect agreement passes any threshold below 1


def test_the_teacher_is_a_copy_that_trains_or_stays_frozen():
    teacher = pretrained_digits_teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    torch.manual_seed(0)
    procedure = C2KD(student_cnn(), teacher)
    assert procedure.teacher_model is not teacher
    assert all(p.requires_grad for p in procedure.teacher_model.parameters())
    frames, labels = torch.randn(8, 2, 8, 8), torch.randint(0, 10, (8,))
    optimizer = torch.optim.SGD(procedure.parameters(), lr=0.1)
    procedure.train()(frames, labels)["loss"].backward()
    optimizer.step()
    moved = procedure.teacher_model.stages[0].conv1.weight
    assert not torch.equal(moved, teacher.stages[0].conv1.weight)  # the copy trained
    torch.testing.assert_close(teacher.state_dict(), before, rtol=0, atol=0)  # the caller's did not
    assert not any(p.requires_grad for p in teacher.parameters())

    frozen = C2KD(student_cnn(), teacher, update_teacher=False).train()
    assert not frozen.teacher_model.training
    terms = frozen(frames, labels)
    assert "ce_teacher" not in terms and "ce_student" in terms
    terms["loss"].backward()
    assert all(p.grad is None for p in frozen.teacher_model.parameters())
    assert frozen.teacher_proxy.fc.weight.grad is not None  # the teacher's proxy still learns


def test_proxy_is_pool_conv_bn_leaky_relu_linear():
    torch.manual_seed(0)
    proxy = Proxy(16, 10).eval()
    features = torch.randn(3, 16, 4, 4)
    pooled = features.mean(dim=(2, 3), keepdim=True)
    hidden = nn.functional.leaky_relu(proxy.bn(proxy.conv(pooled)), 0.1).flatten(1)
    torch.testing.assert_close(proxy(features), proxy.fc(hidden))
    assert proxy.conv.bias is None


def test_bad_inputs_are_refused_naming_the_argument_and_the_shapes():
    with pytest.raises(ValueError, match=r"num_classes is required.*Sequential"):
        C2KD(nn.Sequential(), teacher_cnn())
    with pytest.raises(ValueError, match=r"kendall_threshold must lie in \[-1, 1\).*got 1.0"):
        C2KD(student_cnn(), teacher_cnn(), kendall_threshold=1.0)
    with pytest.raises(ValueError, match="stage: stage -4 out of range for 3 stages"):
        C2KD(student_cnn(), teacher_cnn(), stage=-4)
    procedure = C2KD(student_cnn(), teacher_cnn())
    with pytest.raises(ValueError, match=r"target must be class indices of shape \(4,\)"):
        procedure(torch.randn(4, 2, 8, 8), torch.zeros(4, 10))
    with pytest.raises(ValueError, match=r"more than teacher_input_channels=1.*\(4, 1, 8, 8\)"):
        procedure(torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))


def test_training_brings_the_students_class_ranking_closer_to_its_teachers():
    # the paper's aim: knowledge customised for the student; measured as the rank agreement
    # (Kendall) of the student's logits on the edge view with those of the teacher it was
    # trained with (C2KD's co-trained copy) on the image, against the same-seed student alone
    teacher = pretrained_digits_teacher()
    pairs = load_paired_digits(load_digits_split(seed=0))
    options = {"epochs": 10, "batch_size": 25, "seed": 0, "device": "cpu"}
    torch.manual_seed(0)
    procedure = C2KD(student_cnn(), teacher)
    history = train(procedure, pairs.frames(100), **options)
    torch.manual_seed(0)
    alone = student_cnn()
    train(Supervised(alone), pairs.edges.with_train_subset(100), **options)
    teacher_logits = predict_logits(procedure.teacher_model, pairs.images.x_test)

    def rank_agreement(student: nn.Module) -> float:
        student_logits = predict_logits(student, pairs.edges.x_test)
        return kendall_tau_b(student_logits, teacher_logits).nanmean().item()

    assert history.losses[-1]["selected"] > history.losses[0]["selected"]  # proxies come to agree
    assert rank_agreement(procedure.student) > rank_agreement(alone) + 0.02
