"""The two main networks: stem → three loopable layers → head, for images and for text.

A backbone exposes the pieces the DynaLay network composes:
- `stem(x, lengths) -> inj`: a tuple of batch-first tensors; inj[0] is the injection u, which is
  also the first layer's input; any further entries (the LSTM's mask) ride along.
- `layers`: three loopable layers called as `layer(h, *inj)`.
- `pool(z, *inj) -> (B, D)`: a summary of a state, for the agent's profile and the head.
- `head(z, *inj) -> (B, n_classes)`.
"""

import torch
from torch import Tensor, nn

from model.config import ModelConfig
from model.layers import ConvLoopLayer, LSTMLoopLayer, SingleConvLoopLayer
from model.staged import StagedCNNBackbone
from model.whitening import WHITEN_KERNEL, whitening_filters


class CNNBackbone(nn.Module):
    """Images (B, C_in, S, S) → stem at (B, width, S/4, S/4) → 3 conv loop layers → head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        half, width = cfg.width // 2, cfg.width
        self.stem_layers = nn.Sequential(
            nn.Conv2d(cfg.in_channels, half, 3, padding=1, bias=False),
            nn.GroupNorm(cfg.groups_for(half), half),
            nn.GELU(),
            nn.MaxPool2d(2),  # S → S/2
            nn.Conv2d(half, width, 3, padding=1, bias=False),
            nn.GroupNorm(cfg.groups_for(width), width),
            nn.GELU(),
            nn.MaxPool2d(2),  # S/2 → S/4
        )
        self.layers = nn.ModuleList(ConvLoopLayer(width, cfg.groups_for(width)) for _ in range(3))
        self.fc = nn.Linear(2 * width, cfg.n_classes)
        self.summary_dims = (width,) * 3  # `pool` of each layer's state

    def stem(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, ...]:
        return (self.stem_layers(x),)  # (B, W, S/4, S/4)

    def pool(self, z: Tensor, u: Tensor) -> Tensor:
        return z.mean(dim=(2, 3))  # (B, W)

    def head(self, z: Tensor, u: Tensor) -> Tensor:
        pooled = torch.cat([z.mean(dim=(2, 3)), z.amax(dim=(2, 3))], dim=1)  # (B, 2W)
        return self.fc(pooled)


def _conv_bn(c_in: int, c_out: int, pool: bool, recipe: bool = False) -> list[nn.Module]:
    """conv 3×3 → [maxpool 2] → BatchNorm → GELU, the conv group unit of the fast recipes.

    recipe: the recipes' BatchNorm (fixed scale 1, a learnt shift, running statistics that
    follow the last batches closely); otherwise PyTorch's defaults, which stem "whiten" keeps so
    the embedded checkpoints/cifar10 computes what it was trained with."""
    mods: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    if pool:
        mods.append(nn.MaxPool2d(2))
    norm = nn.BatchNorm2d(c_out, eps=1e-12, momentum=0.4) if recipe else nn.BatchNorm2d(c_out)
    if recipe:
        norm.weight.requires_grad_(False)
    return [*mods, norm, nn.GELU()]


def _partial_identity_(conv: nn.Conv2d) -> None:
    """Initialise a 3×3 conv's first min(C_in, C_out) filters as the identity (a Dirac), the
    rest as PyTorch's default: each conv starts by passing its input through."""
    w = conv.weight.data  # (C_out, C_in, 3, 3)
    nn.init.dirac_(w[: min(w.shape[0], w.shape[1])])


HEAD_SCALE = 0.125


class WhitenedCNNBackbone(nn.Module):
    """Images (B, 3, 32, 32) → whitened stem → 3 conv loop layers → head.

    Stem (runs once per image, so BatchNorm's running statistics are safe): a frozen 2×2 conv
    whose 2·12 filters are the data's patch-covariance eigenvectors (±, scaled to unit
    variance; 32 → 31), GELU, then conv → pool → BN → GELU → conv → BN → GELU at stem_width
    (31 → 15) and
    - stem "whiten": conv → pool → BN → GELU at width (15 → 7);
    - stem "whiten-deep": the same two-conv group at width (15 → 7), then conv → pool → BN →
      GELU (7 → 3), every conv started as a partial identity.
    The three loopable layers keep (width, 7, 7) or (width, 3, 3) and normalise per sample
    (GroupNorm), so a loop's result never depends on its batch mates.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c, w0, w = cfg.in_channels, cfg.stem_width, cfg.width
        deep = cfg.stem == "whiten-deep"
        n_whiten = 2 * c * WHITEN_KERNEL**2
        self.whiten = nn.Conv2d(c, n_whiten, WHITEN_KERNEL, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)  # set from data by init_whitening
        groups = [(n_whiten, w0, True), (w0, w0, False), (w0, w, True)]
        if deep:
            groups += [(w, w, False), (w, w, True)]
        self.stem_layers = nn.Sequential(
            nn.GELU(), *(m for g in groups for m in _conv_bn(*g, recipe=deep))
        )
        loop = SingleConvLoopLayer if cfg.loop_convs == 1 else ConvLoopLayer
        self.layers = nn.ModuleList(loop(w, cfg.groups_for(w)) for _ in range(3))
        self.fc = nn.Linear(2 * w, cfg.n_classes)
        self.summary_dims = (w,) * 3
        if deep:
            convs = [m for m in self.modules() if isinstance(m, nn.Conv2d) and m is not self.whiten]
            for conv in convs:
                _partial_identity_(conv)

    @torch.no_grad()
    def init_whitening(self, images: Tensor) -> None:
        """images: (N, 3, H, W) normalised training images (a few thousand suffice)."""
        self.whiten.weight.copy_(whitening_filters(images, WHITEN_KERNEL).to(self.whiten.weight))

    def stem(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, ...]:
        return (self.stem_layers(self.whiten(x)),)  # (B, W, 7, 7) or (B, W, 3, 3) for 32×32

    pool = CNNBackbone.pool

    def head(self, z: Tensor, u: Tensor) -> Tensor:
        # The pooled features have norm ~√(2W); scaling the logits by 1/8 keeps the head's
        # steps small at the high learning rates a BatchNorm stem trains well with.
        return CNNBackbone.head(self, z, u) * HEAD_SCALE


class LSTMBackbone(nn.Module):
    """Token ids (B, T) → embedding projected to (B, T, H) → 3 LSTM loop layers → head.

    task "classify": masked mean + max pool → (B, n_classes); task "lm": a linear vocabulary
    head at every position → (B, T, n_classes), the logits of each next token.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=0)
        self.embed_dropout = nn.Dropout(cfg.embed_dropout)
        self.proj = nn.Linear(cfg.embed_dim, cfg.hidden_size)
        self.layers = nn.ModuleList(LSTMLoopLayer(cfg.hidden_size) for _ in range(3))
        self.per_token = cfg.task == "lm"
        head_in = cfg.hidden_size if self.per_token else 2 * cfg.hidden_size
        self.fc = nn.Linear(head_in, cfg.n_classes)
        self.summary_dims = (cfg.hidden_size,) * 3

    def stem(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, ...]:
        if lengths is None:
            lengths = (x != 0).sum(1)
        steps = torch.arange(x.shape[1], device=x.device)
        mask = (steps[None, :] < lengths[:, None]).unsqueeze(-1).to(self.proj.weight.dtype)
        u = self.proj(self.embed_dropout(self.embed(x))) * mask  # (B, T, H)
        return u, mask  # mask (B, T, 1)

    def pool(self, z: Tensor, u: Tensor, mask: Tensor) -> Tensor:
        return z.sum(1) / mask.sum(1).clamp_min(1.0)  # masked mean (B, H)

    def head(self, z: Tensor, u: Tensor, mask: Tensor) -> Tensor:
        if self.per_token:
            return self.fc(z)  # (B, T, V); padded positions carry no target
        masked_max = z.masked_fill(mask == 0, float("-inf")).amax(1)
        masked_max = torch.nan_to_num(masked_max, neginf=0.0)  # empty rows
        return self.fc(torch.cat([self.pool(z, u, mask), masked_max], dim=1))


def build_backbone(cfg: ModelConfig) -> nn.Module:
    if cfg.arch == "lstm":
        return LSTMBackbone(cfg)
    if cfg.stem == "staged":
        return StagedCNNBackbone(cfg)
    return WhitenedCNNBackbone(cfg) if cfg.stem.startswith("whiten") else CNNBackbone(cfg)
