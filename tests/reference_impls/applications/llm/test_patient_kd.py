"""Patient KD (Sun et al., 2019): layer choice, the terms by hand, [CLS] only, training, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reference_impls.applications.llm import PatientKDLoss
from reference_impls.applications.llm.patient_kd import patient_layers


def _outputs(seed: int = 0, student_layers: int = 3, teacher_layers: int = 6):
    generator = torch.Generator().manual_seed(seed)
    student_logits = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    teacher_logits = 2 * torch.randn(4, 3, generator=generator, dtype=torch.float64)
    student_hidden = [
        torch.randn(4, 5, 6, generator=generator, dtype=torch.float64)
        for _ in range(student_layers + 1)
    ]
    teacher_hidden = [
        torch.randn(4, 5, 6, generator=generator, dtype=torch.float64)
        for _ in range(teacher_layers + 1)
    ]
    target = torch.tensor([0, 2, 1, 2])
    return student_logits, teacher_logits, student_hidden, teacher_hidden, target


def test_pkd_skip_and_pkd_last_choose_the_paper_s_teacher_layers():
    assert patient_layers(6, 12, "skip") == [2, 4, 6, 8, 10]  # their --fc_layer_idx 1,3,5,7,9
    assert patient_layers(6, 12, "last") == [7, 8, 9, 10, 11]
    assert patient_layers(3, 12, "skip") == [4, 8]
    assert patient_layers(1, 4, "skip") == []
    with pytest.raises(ValueError, match="strategy"):
        patient_layers(3, 6, "first")


def test_the_three_terms_by_hand():
    student_logits, teacher_logits, student_hidden, teacher_hidden, target = _outputs()
    loss = PatientKDLoss()
    terms = loss.terms(student_logits, teacher_logits, student_hidden, teacher_hidden, target)
    p = (teacher_logits / 10).softmax(1)
    q = (student_logits / 10).softmax(1)
    kd = (p * (p / q).log()).sum() / 12 * 100  # mean over 4 examples AND 3 classes, times T^2
    ce = F.cross_entropy(student_logits, target)
    squared = 0.0
    for j, i in ((1, 2), (2, 4)):  # 3 student layers, 6 teacher layers: skip
        s = student_hidden[j][:, 0] / student_hidden[j][:, 0].norm(dim=1, keepdim=True)
        t = teacher_hidden[i][:, 0] / teacher_hidden[i][:, 0].norm(dim=1, keepdim=True)
        squared += ((s - t) ** 2).sum()
    patience = squared / (4 * 2 * 6)  # their F.mse_loss: over batch, layers and coordinates
    torch.testing.assert_close(terms["kd"], kd)
    torch.testing.assert_close(terms["ce"], ce)
    torch.testing.assert_close(terms["patience"], patience)
    total = loss(student_logits, teacher_logits, student_hidden, teacher_hidden, target)
    torch.testing.assert_close(total, 0.3 * ce + 0.7 * kd + 500 * patience)
    last = PatientKDLoss(strategy="last", normalize=False).patience(student_hidden, teacher_hidden)
    raw = sum(
        ((student_hidden[j][:, 0] - teacher_hidden[i][:, 0]) ** 2).sum()
        for j, i in ((1, 4), (2, 5))
    )
    torch.testing.assert_close(last, raw / 48)


def test_only_cls_is_read_so_padding_never_contributes():
    student_logits, teacher_logits, student_hidden, teacher_hidden, target = _outputs()
    loss = PatientKDLoss()
    reference = loss(student_logits, teacher_logits, student_hidden, teacher_hidden, target)
    changed = [h.clone() for h in student_hidden + teacher_hidden]
    for h in changed:
        h[:, 1:] = 30 * torch.randn_like(h[:, 1:])  # every position but [CLS]
    assert loss(student_logits, teacher_logits, changed[:4], changed[4:], target) == reference
    # normalised: the scale of a [CLS] state does not matter
    scaled = [h * 7 for h in student_hidden]
    torch.testing.assert_close(
        loss(student_logits, teacher_logits, scaled, teacher_hidden, target), reference
    )
    one_layer = loss.patience(student_hidden[:2], teacher_hidden[:4])
    assert one_layer == 0  # a one-layer student has no intermediate layer to teach


def test_bad_inputs_are_clear_errors():
    student_logits, teacher_logits, student_hidden, teacher_hidden, target = _outputs()
    loss = PatientKDLoss()
    with pytest.raises(ValueError, match="one width D"):
        loss(
            student_logits,
            teacher_logits,
            [h[..., :4] for h in student_hidden],
            teacher_hidden,
            target,
        )
    with pytest.raises(ValueError, match=r"teacher's 5 layers must be a multiple"):
        loss(student_logits, teacher_logits, student_hidden, teacher_hidden[:6], target)
    with pytest.raises(ValueError, match="student_hidden must be the embedding output"):
        loss(student_logits, teacher_logits, [h[0] for h in student_hidden], teacher_hidden, target)
    with pytest.raises(ValueError, match="alpha"):
        PatientKDLoss(alpha=1.5)
    with pytest.raises(ValueError, match="beta"):
        PatientKDLoss(beta=-1)


def test_patient_kd_moves_the_student_s_cls_states_toward_the_teacher_s():
    pytest.importorskip("transformers")
    from reference_impls.common.encoders import (
        bert_outputs,
        fit_bert,
        load_bert_sentiment,
        student_bert,
        teacher_bert,
    )

    data = load_bert_sentiment(0, num_train=192, num_test=64)
    torch.manual_seed(0)
    teacher = teacher_bert().eval().requires_grad_(False)  # untrained: a fixed target to reach
    loss = PatientKDLoss()

    def patience(student: torch.nn.Module) -> float:
        with torch.no_grad():
            s, t = bert_outputs(student, data.x_test), bert_outputs(teacher, data.x_test)
            return float(loss.patience(s.hidden, t.hidden))

    torch.manual_seed(1)
    baseline = student_bert()
    fit_bert(baseline, data, epochs=3)
    torch.manual_seed(1)
    student = student_bert()

    def pkd(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        s = bert_outputs(student, ids, mask)
        with torch.no_grad():
            t = bert_outputs(teacher, ids, mask)
        return loss(s.logits, t.logits, s.hidden, t.hidden, labels)

    fit_bert(student, data, pkd, epochs=3)
    assert patience(student) < 0.5 * patience(baseline)
