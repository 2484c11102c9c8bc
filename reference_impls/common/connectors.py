"""Trainable connectors that several feature losses put between student and teacher widths."""

from __future__ import annotations

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


__all__ = ["conv1x1_bn"]
