"""The frozen image backbone: a timm model chosen by name, giving grid x grid tokens per image."""

from __future__ import annotations

import timm
import torch
from torch import nn


class BackboneError(RuntimeError):
    pass


class Backbone(nn.Module):
    """Frozen timm feature extractor.

    forward: images (b, h, w, 3) uint8 RGB at `image_size`  ->  tokens (b, grid*grid, backbone_dim)
    """

    def __init__(
        self,
        name: str,
        *,
        image_size: int,
        grid: int,
        kwargs: dict | None = None,
        pretrained: bool = False,
        weights: str | None = None,
    ):
        super().__init__()
        create_kwargs = dict(kwargs or {})
        if weights:
            pretrained = True
            create_kwargs["pretrained_cfg_overlay"] = {"file": weights}
        try:
            self.net = timm.create_model(name, pretrained=pretrained, num_classes=0, **create_kwargs)
        except Exception as e:  # timm raises many kinds (RuntimeError, OSError, HTTP errors)
            where = f"the local file {weights}" if weights else "the Hugging Face Hub"
            raise BackboneError(
                f"Could not build the backbone {name!r} with pretrained weights from {where} ({e}). "
                "Without network access, pass a local weight file (backbone_weights) or load a checkpoint, "
                "which carries the backbone's weights."
            ) from e
        cfg = self.net.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1))
        self.image_size = image_size
        self.grid = grid
        self.num_prefix_tokens = getattr(self.net, "num_prefix_tokens", 0)
        self.freeze()

    def freeze(self) -> None:
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        self.net.eval()  # frozen: batch-norm statistics and dropout never change
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(b, h, w, 3) uint8 -> (b, 3, h, w) normalised float."""
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (b, 3, h, w) -> tokens (b, grid*grid, c), differentiable (for backbone pretraining)."""
        f = self.net.forward_features(x)
        if f.ndim == 4:  # (b, c, h, w) from CNNs and Swin-CR
            if f.shape[1] != f.shape[2] or f.shape[2] != self.grid:
                f = f if f.shape[-1] == self.grid else f.permute(0, 3, 1, 2)  # NHWC outputs
            return f.flatten(2).transpose(1, 2)
        return f[:, self.num_prefix_tokens :]  # (b, n, c) from ViTs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            tokens = self.features(self.preprocess(images))
        if tokens.shape[1] != self.grid * self.grid:
            raise BackboneError(
                f"The backbone gives {tokens.shape[1]} tokens per image but the config expects "
                f"{self.grid}x{self.grid}; fix `grid` or `image_size` in the config."
            )
        return tokens
