"""Patch-whitening filters: a conv whose outputs are the image's decorrelated 2×2 patches.

The filters are the eigenvectors of the training images' patch covariance, scaled by
1/sqrt(eigenvalue + eps), in both signs (so a following GELU keeps both halves of each
direction). A net that starts from whitened inputs trains in fewer epochs.
"""

import torch
from torch import Tensor

WHITEN_KERNEL = 2


def patch_covariance(images: Tensor, kernel: int) -> Tensor:
    """(N, C, H, W) → (C·k·k, C·k·k) second moment of every k×k patch (images are centred)."""
    c = images.shape[1]
    patches = images.unfold(2, kernel, 1).unfold(3, kernel, 1)  # (N, C, H', W', k, k)
    flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kernel * kernel).double()
    return flat.T @ flat / flat.shape[0]


def whitening_filters(images: Tensor, kernel: int = WHITEN_KERNEL, eps: float = 5e-4) -> Tensor:
    """(N, C, H, W) → conv weight (2·C·k·k, C, k, k), largest-variance direction first.

    Applied to the same images, the first C·k·k output channels have identity covariance
    (up to eps); the second C·k·k are their negatives.

    >>> images = torch.randn(64, 3, 8, 8)
    >>> filters = whitening_filters(images, eps=0.0)
    >>> filters.shape  # 2 signs × (3 channels × 2 × 2 pixels) filters
    torch.Size([24, 3, 2, 2])
    >>> out = torch.nn.functional.conv2d(images, filters[:12])  # (64, 12, 7, 7)
    >>> torch.allclose(patch_covariance(out, 1), torch.eye(12, dtype=torch.float64), atol=1e-3)
    True
    """
    c = images.shape[1]
    values, vectors = torch.linalg.eigh(patch_covariance(images.float(), kernel))
    values, vectors = values.flip(0), vectors.flip(1)  # descending
    scaled = (vectors / (values + eps).sqrt()).T.reshape(-1, c, kernel, kernel)
    return torch.cat([scaled, -scaled]).float()
