"""The global multi-label classification head (Sec. 2.1)."""

from torch import nn


class GlobalHead(nn.Module):
    """A 1x1 convolution from the last-stage features M to the class activation map X (N channels).

    Pooling into ``p_c`` is done by the meta-architecture: global average pooling ("gap", the
    multi-task baselines) or DAA (Eq. 3).
    """

    def __init__(self, in_channels: int, num_classes: int, init: str = "normal"):
        """``init``: "normal" (weights ~ N(0, 0.01^2), zero bias) or "zero" (the authors' code: zero
        weights and no bias, so the CAM X starts at 0 and DAA's gradient into the detector's
        attention, which is proportional to X, starts at 0 too)."""
        super().__init__()
        if init not in ("normal", "zero"):
            raise ValueError(f"OXNET.GLOBAL_HEAD.INIT must be 'normal' or 'zero', got {init!r}")
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=init == "normal")
        if init == "zero":
            nn.init.zeros_(self.conv.weight)
        else:
            nn.init.normal_(self.conv.weight, std=0.01)
            nn.init.constant_(self.conv.bias, 0.0)

    def forward(self, features):
        return self.conv(features)
