"""Trainable connectors that several feature losses put between student and teacher widths."""

from __future__ import annotations

import torch
from torch import nn


def conv1x1_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """A 1x1 convolution without bias, then batch norm: the connector of FSP, ICKD and OFD.

    Maps a student feature map ``[B, in_channels, H, W]`` to the teacher's width
    ``[B, out_channels, H, W]``; batch norm keeps its output on the teacher's scale
    from the first step.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def same_dtype(
    owner: str, connector: nn.Module, features: torch.Tensor, what: str = "student features"
) -> None:
    """Refuse features whose dtype differs from the connector's parameters, saying what to do.

    A connector is trained, so it is not cast silently on every call: the loss is
    moved to the models' dtype once, as the models were. Under ``torch.autocast``
    torch casts for itself and the check is skipped. ``owner`` names the loss and
    ``what`` the tensors the connector reads (e.g. ``"teacher features"``).
    """
    parameter = next(connector.parameters(), None)
    if parameter is None or parameter.dtype == features.dtype:
        return
    if torch.is_autocast_enabled(features.device.type):
        return
    dtype = str(features.dtype).removeprefix("torch.")
    raise TypeError(
        f"{owner}'s connector is {str(parameter.dtype).removeprefix('torch.')} but the {what} "
        f"are {dtype}; move the loss to the models' dtype as you did the models, "
        f"e.g. loss.to(torch.{dtype})" + (" (or loss.double())" if dtype == "float64" else "")
    )


__all__ = ["conv1x1_bn", "same_dtype"]
