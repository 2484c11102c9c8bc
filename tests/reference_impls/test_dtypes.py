"""float64 stays float64 in every Sources and Schemes implementation; connectors say what to do.

The policy (``reference_impls.common.losses.at_least_float32``): half precision is
computed in float32, float32 and float64 are kept. A loss with a trainable
connector either follows the input dtype or refuses features of another dtype
than its parameters with a ``TypeError`` that says how to move the loss
(``reference_impls.common.connectors.same_dtype``), never with torch's raw
"Input type (double) and bias type (float)".

Every case is built as the contract tests build it (``reference_impls.common.building``)
for the digits pair, moved to float64 with ``.double()`` and run on float64 digits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdatlas import loader
from reference_impls.common.building import ImplementationCase, tiny_pair
from reference_impls.common.data import load_digits_split
from reference_impls.schemes.offline.distiller import distillation_arguments

ROOT = Path(__file__).resolve().parents[2]
AREAS = ("reference_impls.sources.", "reference_impls.schemes.")


def sources_and_schemes() -> list[str]:
    kb = loader.load(ROOT)
    objects = dict.fromkeys(i.object for _, _, i in kb.implementations())
    return [o for o in objects if o.startswith(AREAS)]


OBJECTS = sources_and_schemes()
LOSSES = [o for o in OBJECTS if ImplementationCase(o).is_loss]


def float64_digits(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits_split(seed=0)
    return data.x_train[:size].double(), data.y_train[:size].clone()


def float64_inputs(loss: torch.nn.Module) -> list:
    """What the distiller passes ``loss`` on float64 digits from float64 models."""
    pair = tiny_pair(0)
    x, y = float64_digits()
    student, teacher = pair.student.double(), pair.teacher.double().eval()
    with torch.no_grad():
        teacher_out = teacher(x)
    return distillation_arguments(loss, student(x), teacher_out, y)


def test_every_source_and_scheme_is_covered():
    assert len(OBJECTS) >= 30 and len(LOSSES) >= 20
    assert "reference_impls.sources.feature.fitnets:FitNetsLoss" in LOSSES
    assert "reference_impls.schemes.online.dml:DML" in OBJECTS


@pytest.mark.parametrize("object_path", OBJECTS, ids=OBJECTS)
def test_a_float64_implementation_on_float64_inputs_returns_float64(object_path):
    case = ImplementationCase(object_path)
    torch.manual_seed(0)
    built = case.build(tiny_pair(0)).double()
    torch.manual_seed(1)
    with case.explain_failures():
        if case.is_loss:
            terms = {"loss": built(*float64_inputs(built))}
        else:
            terms = built.train()(*float64_digits())
    for name, value in terms.items():
        assert value.dtype == torch.float64, f"term {name!r} is {value.dtype}"
        assert torch.isfinite(value).all(), f"term {name!r} is not finite"
    terms["loss"].backward()
    for name, parameter in built.named_parameters():
        if parameter.grad is not None:
            assert parameter.grad.dtype == torch.float64, f"{name}'s gradient"


@pytest.mark.parametrize("object_path", LOSSES, ids=LOSSES)
def test_a_float32_loss_on_float64_inputs_works_or_says_what_to_do(object_path):
    case = ImplementationCase(object_path)
    torch.manual_seed(0)
    loss = case.build(tiny_pair(0))  # float32, as built
    arguments = float64_inputs(loss)
    has_parameters = any(True for _ in loss.parameters())
    try:
        value = loss(*arguments)
    except TypeError as error:  # anything else (torch's RuntimeError) fails the test
        assert has_parameters, "a loss without parameters has no reason to refuse float64"
        message = str(error)
        assert "Input type" not in message
        assert "float64" in message and "loss.double()" in message, message
        assert type(loss).__qualname__ in message, "the message names the loss"
    else:
        assert value.dtype == torch.float64, f"the float64 inputs gave a {value.dtype} loss"


def test_half_precision_is_still_computed_in_float32():
    from reference_impls.sources.feature.at import ATLoss
    from reference_impls.sources.logit.kd import KDLoss

    torch.manual_seed(0)
    logits = [torch.randn(4, 10, dtype=torch.bfloat16) for _ in range(2)]
    assert KDLoss()(*logits).dtype == torch.float32
    features = [[torch.randn(4, 8, 8, 8, dtype=torch.float16)] for _ in range(2)]
    assert ATLoss(stages=(0,))(*features).dtype == torch.float32
