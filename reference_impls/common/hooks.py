"""Feature extraction by forward hooks, so a user's model needs no edits.

Example::

    with FeatureTaps(model, ["layer2", "layer3"]) as taps:
        logits = model(images)
    student_feats = taps.features  # [layer2 output, layer3 output]

Modules are named as in ``model.named_modules()``. As in torchdistill, the
hooks store outputs; whether gradients flow through them is decided by the
surrounding code (wrap a teacher's forward in ``torch.no_grad()``).

To use any classifier (torchvision, timm or your own) where a ``ModelOutput`` is
expected, e.g. with a feature loss in ``OfflineDistiller``, wrap it once::

    student = with_features(resnet18(num_classes=10), layers=["layer2", "layer3", "layer4"])
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import torch
from torch import nn

from reference_impls.common.models import ModelOutput


class FeatureTaps:
    """Record the outputs of named submodules during a forward pass."""

    def __init__(self, model: nn.Module, module_names: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        missing = [name for name in module_names if name not in modules]
        if missing:
            known = ", ".join(name for name in modules if name) or "(none)"
            raise KeyError(f"no submodule named {missing!r}; known: {known}")
        self.module_names = list(module_names)
        self._modules = [modules[name] for name in module_names]
        self._outputs: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _make_hook(self, name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            self._outputs[name] = output[0] if isinstance(output, tuple) else output

        return hook

    def __enter__(self) -> FeatureTaps:
        self._outputs.clear()
        for name, module in zip(self.module_names, self._modules, strict=True):
            self._handles.append(module.register_forward_hook(self._make_hook(name)))
        return self

    def __exit__(
        self,
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def features(self) -> list[torch.Tensor]:
        """Outputs in the order the names were given (raises if one did not run)."""
        absent = [name for name in self.module_names if name not in self._outputs]
        if absent:
            raise RuntimeError(f"modules {absent!r} did not run in the last forward pass")
        return [self._outputs[name] for name in self.module_names]


def pooled(feature: torch.Tensor) -> torch.Tensor:
    """``[B, D]`` from a feature: ``[B, C, H, W]`` averaged over space, ``[B, T, D]`` over tokens."""
    if feature.dim() == 4:
        return feature.mean(dim=(2, 3))
    if feature.dim() == 3:
        return feature.mean(dim=1)
    return feature.flatten(1)


class WithFeatures(nn.Module):
    """A classifier whose forward returns a :class:`ModelOutput` (made by :func:`with_features`).

    ``forward`` runs the wrapped ``model`` once with :class:`FeatureTaps` on the
    named layers and returns its logits, ``features`` (the layers' outputs, in the
    order given), ``preact_features`` (the outputs of ``preact_layers``; empty
    unless given) and ``embedding`` (the last feature pooled to ``[B, D]``: as in
    this package's models, the pooled output of the last stage when ``layers``
    ends with it). The original model is ``.model``; its parameters, modes and
    devices are the wrapper's.
    """

    def __init__(
        self, model: nn.Module, layers: Sequence[str], preact_layers: Sequence[str] = ()
    ) -> None:
        super().__init__()
        if isinstance(layers, str) or isinstance(preact_layers, str):
            raise TypeError('layers and preact_layers are lists of names, e.g. ["layer1"]')
        if not layers:
            raise ValueError("layers must name at least one submodule of the model")
        FeatureTaps(model, [*layers, *preact_layers])  # unknown names fail here, listing the known
        self.model = model
        self.layers = list(layers)
        self.preact_layers = list(preact_layers)

    def forward(self, *args, **kwargs) -> ModelOutput:
        with FeatureTaps(self.model, [*self.layers, *self.preact_layers]) as taps:
            output = self.model(*args, **kwargs)
        if isinstance(output, ModelOutput):
            output = output.logits
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"{type(self.model).__qualname__} returned {type(output).__name__}; "
                "with_features needs a model whose forward returns its logits as a tensor"
            )
        tapped = taps.features
        features, preacts = tapped[: len(self.layers)], tapped[len(self.layers) :]
        return ModelOutput(output, features, preacts, pooled(features[-1]))

    def extra_repr(self) -> str:
        return f"layers={self.layers}, preact_layers={self.preact_layers}"


def with_features(
    model: nn.Module, layers: Sequence[str], preact_layers: Sequence[str] = ()
) -> WithFeatures:
    """Wrap any classifier so it returns a :class:`ModelOutput` with the named layers' outputs.

    Args:
        model: an ``nn.Module`` whose forward returns logits ``[B, C]``.
        layers: names from ``model.named_modules()`` whose outputs are the feature maps
            (post-activation, one per stage, e.g. ``["layer1", "layer2", "layer3"]`` for a
            torchvision ResNet); the last one, pooled, is the embedding.
        preact_layers: names of modules whose outputs are the maps *before* the last
            ReLU of each stage, for AB and OFD. Most models apply that ReLU inside a
            block's ``forward``, where no module's output is the pre-activation map:
            then leave this empty (those losses will refuse the model), or write the
            model to return a ``ModelOutput`` itself. A tapped module whose output is
            later changed in place (``ReLU(inplace=True)``) records the changed values.
    """
    return WithFeatures(model, layers, preact_layers)
