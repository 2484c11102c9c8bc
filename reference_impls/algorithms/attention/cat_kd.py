r"""CAT-KD: transfer the teacher's class activation maps, pooled to a few cells, to the student.

Citation: ``guo2023class`` (Guo, Yan, Li and Lin, CVPR 2023).
Authors' code: https://github.com/GzyAftermath/CAT-KD (commit ``4467073``):
``mdistiller/distillers/CAT_KD.py`` (class ``CAT_KD``, functions ``CAT_loss`` and
``_Normalize``); the class activation maps come from the ``*_test`` models of
``mdistiller/models/cifar/resnet.py`` (``ResNet_test.conv_test``), into which
``tools/train.py`` copies the classifier's weight as a 1x1 convolution.

For a network whose last feature map $F \in \mathbb{R}^{C \times H \times W}$ feeds global
average pooling and a linear classifier with weight $W \in \mathbb{R}^{K \times C}$, the class
activation map (CAM) of class $k$ is the classifier applied at every position,
$M_k(h, w) = \sum_c W_{k c} F_c(h, w)$ (a 1x1 convolution; its spatial mean is the logit
$z_k$ without the bias). CAT-KD average-pools the $K$ maps of student and teacher to
$r \times r$ cells, optionally $\ell_2$-normalises each pooled map over its cells, and matches
them with the mean squared error over the batch $B$, the $K$ classes and the $r^2$ cells:

$$
\mathcal{L} = \mathrm{CE}\big(y, z^{s}\big)
  + \beta\,\frac{1}{B K r^{2}} \sum_{b,k}
    \big\lVert \phi\big(\mathrm{pool}_r(M^{s}_{b,k})\big)
             - \phi\big(\mathrm{pool}_r(M^{t}_{b,k})\big) \big\rVert_2^{2},
\qquad \phi(A) = \frac{A}{\lVert A \rVert_2}\ \text{(normalised)}\ \text{or}\ \phi(A) = A.
$$

Defaults: the CIFAR-100 ResNet32x4 → ResNet8x4 configuration
(``configs/cifar100/CAT_KD/res32x4_res8x4.yaml``): $\beta = 15$ (``CAT_loss_weight``, folded
into the default here), $r = 2$ (``CAM_RESOLUTION``), no normalisation (``IF_NORMALIZE:
False``), cross-entropy weight 1 (``CE_WEIGHT``, ``onlyCAT: False``). The normalised variant
is ``normalize=True``; the authors pair it with other weights, e.g. $\beta = 40$ for
ResNet50 → MobileNetV2, $\beta = 600$ and $r = 4$ for ResNet32x4 → ShuffleNetV1, and 400 in
``mdistiller/engine/cfg.py`` (the configuration defaults). Their binarised and
"only some classes" CAMs (``IF_BINARIZE``, ``IF_OnlyTransferPartialCAMs``) are ablations of
the paper and are not implemented.

Equivalence with the authors' code (scratch check, not part of the tests): their
``CAT_KD.forward_train`` on their ``resnet32x4_test`` → ``resnet8x4_test`` (100 classes,
a batch of 64 CIFAR-sized inputs, training mode) and this procedure on the same models and
inputs give the same total loss and CAT term (float64: equal to the last bit; float32:
equal) and the same gradients on every student parameter (max relative difference
6e-15 in float64, 3e-6 in float32), with and without normalisation.

On small models $\beta = 15$ is too strong. Our tiny models' last maps are 2x2, so the
pooling averages nothing and the unnormalised term starts near 20 (x 15): measured on the
digits (``student_cnn`` from a ``teacher_cnn`` at 0.991, 100 labelled images, 9 epochs,
seeds 0 and 1), cross-entropy alone reaches 0.866 test accuracy, ``CATKD(beta=1.0)``
0.912, ``CATKD()`` 0.114 (the student does not learn). The authors' README asks to tune
$\beta$ so that the CAT term stays "within 1~50 after the first epoch"; do so for your model.

Usage: ``CATKD(student, teacher)`` is a procedure: ``forward(x, y)`` returns
``{"loss", "ce", "cat"}``. Each model returns a ``ModelOutput`` whose last feature map is the
one its classifier reads (this package's ``TinyCNN``; for another classifier,
``reference_impls.common.with_features(model, layers=[<its last stage>])``); its classifier is
the ``nn.Linear`` named by ``student_classifier`` / ``teacher_classifier`` (default ``"fc"``;
``"model.fc"`` inside ``with_features``). :func:`class_activation_maps` and :func:`cat_loss`
are the two steps, for a training loop of your own.

Deviations:

* The authors convert both networks so that the CAMs are their last feature map: the
  classifier becomes a 1x1 convolution *without bias* and the logits are the CAMs' spatial
  mean, so their student has no classifier bias and their teacher's logits lose theirs. We
  keep the models as they are and compute the CAMs from the classifier's weight alone (with
  the bias, each map would be shifted by its class's constant); the student's cross-entropy
  uses its ordinary logits, bias included. With zero biases the two are identical.
* A map smaller than $r \times r$ is refused (``ValueError``): adaptive average pooling would
  repeat its cells. The authors' maps (8x8 on CIFAR, 7x7 on ImageNet) are never smaller.
* The maps and the distance are computed in at least float32 (half precision is upcast,
  autocast is off for the 1x1 convolution; float64 stays float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import freeze, logits_of
from reference_impls.common.validation import at_least, loss_weights
from reference_impls.schemes.offline.distiller import select_inputs


def class_activation_maps(
    feature_map: torch.Tensor, classifier_weight: torch.Tensor
) -> torch.Tensor:
    """$M_k = \\sum_c W_{kc} F_c$: ``[B, C, H, W]`` and ``[K, C]`` → ``[B, K, H, W]``, in >= float32.

    The linear classifier applied at every position, as the authors' 1x1 ``conv_test``.
    """
    if feature_map.dim() != 4:
        raise ValueError(
            f"feature_map must have shape [B, C, H, W], got shape {tuple(feature_map.shape)}"
        )
    if classifier_weight.dim() != 2 or classifier_weight.shape[1] != feature_map.shape[1]:
        raise ValueError(
            f"classifier_weight must have shape [K, C] with C = {feature_map.shape[1]} (the "
            f"feature map's channels, shape {tuple(feature_map.shape)}), got shape "
            f"{tuple(classifier_weight.shape)}"
        )
    features = at_least_float32(feature_map)
    weight = at_least_float32(classifier_weight)
    dtype = torch.promote_types(features.dtype, weight.dtype)
    with torch.autocast(features.device.type, enabled=False):
        return torch.einsum("bchw,kc->bkhw", features.to(dtype), weight.to(dtype))


def cat_loss(
    student_cams: torch.Tensor,
    teacher_cams: torch.Tensor,
    resolution: int = 2,
    normalize: bool = False,
) -> torch.Tensor:
    """Mean squared difference of the CAMs pooled to ``resolution`` x ``resolution`` (teacher detached).

    ``normalize``: each pooled map divided by its L2 norm over the cells first (``IF_NORMALIZE``).
    """
    for name, cams in (("student_cams", student_cams), ("teacher_cams", teacher_cams)):
        if cams.dim() != 4:
            raise ValueError(f"{name} must have shape [B, K, H, W], got {tuple(cams.shape)}")
        if cams.shape[2] < resolution or cams.shape[3] < resolution:
            raise ValueError(
                f"{name} maps are {tuple(cams.shape[2:])}, smaller than the pooled resolution "
                f"{resolution} x {resolution}; lower cam_resolution or tap a larger map"
            )
    if student_cams.shape[:2] != teacher_cams.shape[:2]:
        raise ValueError(
            f"student_cams and teacher_cams must have the same batch and classes [B, K, ...], "
            f"got shapes {tuple(student_cams.shape)} and {tuple(teacher_cams.shape)}"
        )
    size = (resolution, resolution)
    student = F.adaptive_avg_pool2d(at_least_float32(student_cams), size)
    teacher = F.adaptive_avg_pool2d(at_least_float32(teacher_cams.detach()), size)
    if normalize:
        student = F.normalize(student, dim=(2, 3))
        teacher = F.normalize(teacher, dim=(2, 3))
    return F.mse_loss(student, teacher.to(student.dtype))


def linear_classifier(model: nn.Module, name: str, argument: str) -> nn.Linear:
    """The ``nn.Linear`` called ``name`` in ``model`` (``ValueError`` naming ``argument`` otherwise)."""
    try:
        layer = model.get_submodule(name)
    except AttributeError as error:
        raise ValueError(
            f"{argument}={name!r}: {type(model).__name__} has no submodule of that name; give the "
            "name of its final linear classifier as in model.named_modules()"
        ) from error
    if not isinstance(layer, nn.Linear):
        raise ValueError(
            f"{argument}={name!r} is a {type(layer).__name__}, not the nn.Linear classifier "
            "that reads the globally pooled last feature map"
        )
    return layer


class CATKD(DistillationProcedure):
    """A student trained with cross-entropy and the teacher's class activation maps (CAT-KD).

    Args:
        student: the network trained; returns a ``ModelOutput`` (logits and feature maps).
        teacher: the trained network, frozen here; returns the same.
        beta: weight $\\beta$ of the CAT term (authors, ResNet32x4 → ResNet8x4: 15).
        cam_resolution: side $r$ of the pooled maps (authors: 2).
        normalize: L2-normalise each pooled map before the comparison (authors' config: False).
        ce_weight: weight of the cross-entropy (authors: 1; 0 is their ``onlyCAT``).
        student_classifier, teacher_classifier: names of the models' ``nn.Linear`` classifiers.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        beta: float = 15.0,
        cam_resolution: int = 2,
        normalize: bool = False,
        ce_weight: float = 1.0,
        student_classifier: str = "fc",
        teacher_classifier: str = "fc",
    ) -> None:
        super().__init__()
        loss_weights(beta=beta, ce_weight=ce_weight)
        self.beta = beta
        self.ce_weight = ce_weight
        self.cam_resolution = at_least("cam_resolution", cam_resolution, 1)
        self.normalize = normalize
        student_fc = linear_classifier(student, student_classifier, "student_classifier")
        teacher_fc = linear_classifier(teacher, teacher_classifier, "teacher_classifier")
        if student_fc.out_features != teacher_fc.out_features:
            raise ValueError(
                f"the student's classifier has {student_fc.out_features} classes but the "
                f"teacher's has {teacher_fc.out_features}; CAT-KD matches one map per class"
            )
        self.student = student
        self.teacher = freeze(teacher)
        self.student_classifier = student_classifier
        self.teacher_classifier = teacher_classifier

    def train(self, mode: bool = True) -> CATKD:
        super().train(mode)
        self.teacher.eval()  # the teacher's batch-norm statistics never move
        return self

    def class_activation_maps(self, model: nn.Module, output, which: str) -> torch.Tensor:
        """The CAMs of ``model`` (``which``: "student" or "teacher") from its forward ``output``."""
        feature_map = select_inputs(output, "features", type(self).__name__, which)[-1]
        name = self.student_classifier if which == "student" else self.teacher_classifier
        weight = linear_classifier(model, name, f"{which}_classifier").weight
        return class_activation_maps(feature_map, weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        student_out = self.student(x)
        with torch.no_grad():
            teacher_out = self.teacher(x)
            teacher_cams = self.class_activation_maps(self.teacher, teacher_out, "teacher")
        student_cams = self.class_activation_maps(self.student, student_out, "student")
        cat = cat_loss(student_cams, teacher_cams, self.cam_resolution, self.normalize)
        ce = F.cross_entropy(logits_of(student_out), y)
        total = self.ce_weight * ce + self.beta * cat
        return {"loss": total, "ce": ce.detach(), "cat": cat.detach()}

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta}, cam_resolution={self.cam_resolution}, "
            f"normalize={self.normalize}, ce_weight={self.ce_weight}"
        )
