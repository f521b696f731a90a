"""The swap model's loss: SSIM plus L1, both weighted toward eyes and mouth, and the mask head's loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004) with an 11x11 Gaussian window, averaged over channels."""
    c = a.shape[1]
    w = _gaussian_window().to(a).expand(c, 1, 11, 11)
    pad = 5

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), w, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(1, keepdim=True)


def swap_loss(
    rgb: torch.Tensor, mask: torch.Tensor, batch: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Reconstruction (SSIM + L1, weighted) and mask loss; 'total' is what is optimised."""
    target, weight = batch["target"], batch["weight"]
    wsum = weight.sum()
    l1 = ((rgb - target).abs().mean(1, keepdim=True) * weight).sum() / wsum
    dssim = (((1 - ssim_map(rgb, target)) / 2) * weight).sum() / wsum
    mask_loss = F.mse_loss(mask, batch["mask"])
    return {"total": l1 + dssim + mask_loss, "l1": l1, "dssim": dssim, "mask": mask_loss}
