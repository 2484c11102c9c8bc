"""CAT-KD (Guo et al., 2023): hand values, properties of class activation maps, training, errors.

The contract every implementation meets (construction at defaults, gradients, determinism,
state_dict, CPU/CUDA and bf16) is checked by tests/reference_impls/test_contracts.py; the
equivalence with the authors' code is recorded in the module docstring.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from reference_impls.algorithms.attention.cat_kd import CATKD, cat_loss, class_activation_maps
from reference_impls.common import student_cnn, teacher_cnn, train, with_features
from reference_impls.common.testing import digits_setup


def test_hand_computed_value():
    # identity classifiers (K = C = 2), so the CAMs are the feature maps themselves;
    # resolution 1 pools each 2x2 map to its mean: student [1, 2], teacher [3, 0]
    identity = torch.eye(2)
    student = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 2.0)]).unsqueeze(0)
    teacher = torch.stack([torch.full((2, 2), 3.0), torch.zeros(2, 2)]).unsqueeze(0)
    value = cat_loss(
        class_activation_maps(student, identity), class_activation_maps(teacher, identity), 1
    )
    assert value.item() == pytest.approx(((1 - 3) ** 2 + (2 - 0) ** 2) / 2)


def test_hand_computed_value_normalised():
    # one class, 2x2 maps kept at resolution 2: student [[3, 4], [0, 0]] -> [.6, .8, 0, 0],
    # teacher [[0, 0], [0, 2]] -> [0, 0, 0, 1]; mean of the squared differences over 4 cells
    student = torch.tensor([[[[3.0, 4.0], [0.0, 0.0]]]])
    teacher = torch.tensor([[[[0.0, 0.0], [0.0, 2.0]]]])
    value = cat_loss(student, teacher, resolution=2, normalize=True)
    assert value.item() == pytest.approx((0.6**2 + 0.8**2 + 0 + 1) / 4)
    assert cat_loss(student, teacher, resolution=2).item() == pytest.approx((9 + 16 + 4) / 4)


def test_the_spatial_mean_of_a_cam_is_the_logit_without_the_bias():
    # the relation that makes a CAM the class evidence at each position (Zhou et al.; the paper's Eq. 2)
    torch.manual_seed(0)
    model = student_cnn().eval()
    output = model(torch.randn(3, 1, 8, 8))
    cams = class_activation_maps(output.features[-1], model.fc.weight)
    torch.testing.assert_close(cams.mean(dim=(2, 3)) + model.fc.bias, output.logits)


def test_zero_for_a_copy_of_the_teacher_and_invariances_of_the_normalised_loss():
    torch.manual_seed(0)
    teacher = teacher_cnn()
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    same = CATKD(copy.deepcopy(teacher), teacher).eval()
    assert same(x, y)["cat"].item() == pytest.approx(0.0, abs=1e-10)
    # normalised, the maps' scale does not matter: rescale the student's classifier
    student = student_cnn().eval()
    scaled = copy.deepcopy(student)
    with torch.no_grad():
        scaled.fc.weight.mul_(7.0)
    plain = CATKD(student, teacher, normalize=True).eval()(x, y)["cat"]
    rescaled = CATKD(scaled, teacher, normalize=True).eval()(x, y)["cat"]
    torch.testing.assert_close(plain, rescaled)


def test_the_procedure_pools_and_weights_as_the_functions_say():
    torch.manual_seed(0)
    student, teacher = student_cnn(in_channels=3), teacher_cnn(in_channels=3)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))  # 8x8 last maps, pooled to 2x2
    procedure = CATKD(student, teacher, beta=3.0, ce_weight=0.5).eval()
    terms = procedure(x, y)
    s, t = student(x), teacher(x)
    s_cams = class_activation_maps(s.features[-1], student.fc.weight)
    t_cams = class_activation_maps(t.features[-1], teacher.fc.weight)
    manual = F.mse_loss(F.avg_pool2d(s_cams, 4), F.avg_pool2d(t_cams, 4))  # 8x8 -> 2x2
    torch.testing.assert_close(terms["cat"], manual.detach())
    expected = 0.5 * F.cross_entropy(s.logits, y) + 3.0 * manual
    torch.testing.assert_close(terms["loss"], expected)
    only_cat = CATKD(student, teacher, ce_weight=0.0).eval()(x, y)  # the authors' onlyCAT
    torch.testing.assert_close(only_cat["loss"], 15.0 * only_cat["cat"])


def test_a_wrapped_model_names_its_classifier():
    torch.manual_seed(0)

    class Plain(torch.nn.Module):  # a user's classifier: returns logits only
        def __init__(self, width: int) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Conv2d(1, width, 3, padding=1), torch.nn.ReLU()
            )
            self.fc = torch.nn.Linear(width, 10)

        def forward(self, x):
            return self.fc(self.body(x).mean(dim=(2, 3)))

    student, teacher = with_features(Plain(4), ["body"]), with_features(Plain(6), ["body"])
    x, y = torch.randn(2, 1, 8, 8), torch.tensor([1, 2])
    terms = CATKD(student, teacher, student_classifier="model.fc", teacher_classifier="model.fc")(
        x, y
    )
    terms["loss"].backward()
    assert student.model.fc.weight.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="with_features"):
        CATKD(Plain(4), Plain(6))(x, y)  # plain logits carry no feature map


def _cam_gap(student, teacher, x) -> float:
    with torch.no_grad():
        s, t = student.eval()(x), teacher(x)
        s_cams = class_activation_maps(s.features[-1], student.fc.weight)
        t_cams = class_activation_maps(t.features[-1], teacher.fc.weight)
        return cat_loss(s_cams, t_cams).item()


def test_training_moves_student_cams_toward_teacher():
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(CATKD(baseline, teacher, beta=0.0), baseline_data, **kwargs)  # cross-entropy alone
    # beta = 1: the authors' 15 swamps the cross-entropy of this tiny student (module docstring)
    train(CATKD(student, teacher, beta=1.0), data, **kwargs)
    assert _cam_gap(student, teacher, data.x_test) < 0.5 * _cam_gap(baseline, teacher, data.x_test)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": -1.0}, "beta"),
        ({"beta": 0.0, "ce_weight": 0.0}, "must not all be zero"),
        ({"cam_resolution": 0}, "cam_resolution"),
        ({"student_classifier": "head"}, "student_classifier='head'"),
        ({"teacher_classifier": "stem"}, "not the nn.Linear"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CATKD(student_cnn(), teacher_cnn(), **kwargs)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="5 classes but the teacher's has 10"):
        CATKD(student_cnn(num_classes=5), teacher_cnn())
    with pytest.raises(ValueError, match="smaller than the pooled resolution 4 x 4"):
        CATKD(student_cnn(), teacher_cnn(), cam_resolution=4)(  # digits: 2x2 last maps
            torch.randn(2, 1, 8, 8), torch.tensor([0, 1])
        )
    with pytest.raises(ValueError, match=r"classifier_weight must have shape \[K, C\] with C = 8"):
        class_activation_maps(torch.randn(2, 8, 2, 2), torch.randn(10, 4))
    with pytest.raises(ValueError, match=r"feature_map must have shape \[B, C, H, W\]"):
        class_activation_maps(torch.randn(2, 8), torch.randn(10, 8))
    with pytest.raises(ValueError, match="same batch and classes"):
        cat_loss(torch.randn(2, 10, 2, 2), torch.randn(2, 9, 2, 2))
