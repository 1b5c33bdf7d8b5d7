"""The global multi-label classification head (Sec. 2.1)."""
from torch import nn


class GlobalHead(nn.Module):
    """A 1x1 convolution from the last-stage features M to the class activation map X (N channels).

    Pooling into ``p_c`` is done by the meta-architecture: global average pooling ("gap", the
    multi-task baselines) or DAA (Eq. 3).
    """

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.constant_(self.conv.bias, 0.0)

    def forward(self, features):
        return self.conv(features)
