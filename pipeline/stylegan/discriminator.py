"""The StyleGAN2 residual discriminator, with minibatch standard deviation at 4x4.

Each block halves the resolution with a blur before the strided convolution (the antialiasing that
matches the generator's upsampling) and adds a 1x1 shortcut; the sum is scaled by 1/sqrt(2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.stylegan.generator import FullyConnected, bias_lrelu, blur_filter, default_channels, upfirdn2d


class Conv2dLayer(nn.Module):
    """Equalised-learning-rate conv, optionally halving the resolution (blur, then stride 2)."""

    def __init__(
        self, c_in: int, c_out: int, k: int, down: bool = False, act: bool = True, bias: bool = True
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.weight_gain = 1 / math.sqrt(c_in * k * k)
        self.down, self.act, self.k = down, act, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.down:
            p = 2 + (self.k - 1)  # filter taps minus factor, plus the conv's own reach
            x = upfirdn2d(x, blur_filter().to(x.device), pad=((p + 1) // 2, p // 2))
            x = F.conv2d(x, w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.k // 2)
        if self.act:
            return bias_lrelu(x, self.bias)
        return x if self.bias is None else x + self.bias.reshape(1, -1, 1, 1)


class DiscriminatorBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv0 = Conv2dLayer(c_in, c_in, 3)
        self.conv1 = Conv2dLayer(c_in, c_out, 3, down=True)
        self.skip = Conv2dLayer(c_in, c_out, 1, down=True, act=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) / math.sqrt(2)


class Discriminator(nn.Module):
    def __init__(self, resolution: int, channels: tuple[int, ...] = (), mbstd_group: int = 4):
        super().__init__()
        self.resolutions = [2**i for i in range(int(math.log2(resolution)), 2, -1)]  # top down to 8
        chans = dict(
            zip(
                [2**i for i in range(2, int(math.log2(resolution)) + 1)],
                channels or default_channels(resolution),
                strict=False,
            )
        )
        self.fromrgb = Conv2dLayer(3, chans[resolution], 1)
        for res in self.resolutions:
            setattr(self, f"b{res}", DiscriminatorBlock(chans[res], chans[res // 2]))
        c4 = chans[4]
        self.mbstd_group = mbstd_group
        self.conv = Conv2dLayer(c4 + 1, c4, 3)
        self.fc = FullyConnected(c4 * 16, c4)
        self.out = FullyConnected(c4, 1, act=False)

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        """Append the standard deviation of features across a group of samples as one more channel, so
        the discriminator can see a batch without variety (mode collapse)."""
        n, c, h, w = x.shape
        g = min(self.mbstd_group, n)
        if n % g:
            g = 1
        y = x.reshape(g, -1, c, h, w)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])  # [N/g]
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.fromrgb(img)
        for res in self.resolutions:
            x = getattr(self, f"b{res}")(x)
        x = self.conv(self.minibatch_stddev(x))
        return self.out(self.fc(x.flatten(1)))
