"""Feature extraction by forward hooks, so a user's model needs no edits.

Example::

    with FeatureTaps(model, ["layer2", "layer3"]) as taps:
        logits = model(images)
    student_feats = taps.features  # [layer2 output, layer3 output]

Modules are named as in ``model.named_modules()``. As in torchdistill, the
hooks store outputs; whether gradients flow through them is decided by the
surrounding code (wrap a teacher's forward in ``torch.no_grad()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import torch
from torch import nn


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
