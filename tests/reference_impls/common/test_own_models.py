"""A user's own models: the README's example runs as written, plain-logit models work
with logit losses, and ``with_features`` gives any model the features that feature
losses read (issue 18)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from reference_impls.common import ModelOutput, with_features
from reference_impls.common.training import set_seed
from reference_impls.schemes.offline import OfflineDistiller
from reference_impls.sources.feature import ABLoss, ATLoss
from reference_impls.sources.logit import DKDLoss, KDLoss

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Use it with your own model\n.*?```python\n(.*?)```", text, re.S | re.M)
    assert match, "README.md lost its 'Use it with your own model' section or its code block"
    return match.group(1)


def test_readme_own_model_example_runs_as_written():
    printed = io.StringIO()
    namespace: dict = {"__name__": "readme_example"}
    with contextlib.redirect_stdout(printed):
        exec(compile(readme_example(), str(README), "exec"), namespace)
    assert re.fullmatch(r"student accuracy: \d\.\d\d\n", printed.getvalue())
    # the student was trained by all three parts: better than chance on 10 classes
    assert namespace["history"].final_accuracy > 0.2


class PlainCNN(nn.Module):
    """A user's model: named blocks, plain logits."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(x)))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    set_seed(0)
    return torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])


def test_with_features_returns_the_named_layers_and_their_pooled_last():
    model = PlainCNN(4)
    x, _ = batch()
    out = with_features(model, ["block1", "block2"])(x)
    assert isinstance(out, ModelOutput)
    torch.testing.assert_close(out.logits, model(x))
    torch.testing.assert_close(out.features[0], model.block1(x))
    torch.testing.assert_close(out.features[1], model.block2(model.block1(x)))
    torch.testing.assert_close(out.embedding, out.features[1].mean(dim=(2, 3)))
    assert out.preact_features == []
    out = with_features(model, ["block2"], preact_layers=["block2.0"])(x)
    torch.testing.assert_close(out.preact_features[0], model.block2[0](model.block1(x)))


def test_with_features_keeps_the_models_parameters_and_modes():
    model = PlainCNN(4)
    wrapped = with_features(model, ["block1"])
    assert list(wrapped.parameters()) == list(model.parameters())
    wrapped.eval()
    assert not model.training


def test_with_features_refuses_unknown_names_and_a_bare_string():
    with pytest.raises(KeyError, match=r"no submodule named \['layer9'\]; known: block1"):
        with_features(PlainCNN(4), ["block1", "layer9"])
    with pytest.raises(TypeError, match="lists of names"):
        with_features(PlainCNN(4), "block1")


@pytest.mark.parametrize("loss", [KDLoss(), DKDLoss(warmup_epochs=0)], ids=["KD", "DKD"])
def test_distiller_accepts_models_returning_plain_logits(loss):
    student, teacher = PlainCNN(4), PlainCNN(8)
    x, y = batch()
    terms = OfflineDistiller(student, teacher, loss)(x, y)
    expected = loss(*([student(x), teacher(x)] + ([y] if loss.needs_target else [])))
    torch.testing.assert_close(terms["kd"], expected.detach())
    terms["loss"].backward()
    assert student.head[2].weight.grad is not None


def test_feature_loss_on_a_plain_model_says_to_wrap_it():
    x, y = batch()
    distiller = OfflineDistiller(PlainCNN(4), PlainCNN(8), ATLoss(stages=(0, 1)))
    with pytest.raises(
        TypeError,
        match=r"ATLoss reads 'features', but the student returned a "
        r"plain Tensor .*with_features\(model, layers=",
    ):
        distiller(x, y)
    layers = ["block1", "block2"]
    wrapped = OfflineDistiller(
        with_features(PlainCNN(4), layers),
        with_features(PlainCNN(8), layers),
        ATLoss(stages=(0, 1)),
    )
    assert wrapped(x, y)["kd"] > 0


def test_preact_loss_on_a_wrapper_without_preact_layers_names_what_is_missing():
    x, y = batch()
    layers = ["block1", "block2"]
    loss = ABLoss(student_channels=(4, 8), teacher_channels=(8, 16), stages=(0, 1))
    distiller = OfflineDistiller(
        with_features(PlainCNN(4), layers), with_features(PlainCNN(8), layers), loss
    )
    with pytest.raises(
        ValueError, match="ABLoss reads 'preact_features', but the student's ModelOutput has none"
    ):
        distiller(x, y)
