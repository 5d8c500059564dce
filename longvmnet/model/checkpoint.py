"""A `LongVMNet`'s identity and loading: the fingerprint that ties memories to the weights that wrote them,
and strict safetensors loading from a local folder or a Hugging Face Hub repo id. A mixin of `LongVMNet`."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace

import torch

from longvmnet.config import ModelConfig


class CheckpointIO:
    """`fingerprint()`, and `from_pretrained` (through huggingface_hub's mixin) that loads strictly."""

    def fingerprint(self) -> str:
        """Short hash of the config and weights: memories are only valid for the checkpoint that wrote them."""
        if self._fingerprint is None:
            h = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
            for name, t in sorted(self.state_dict().items()):
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir,
        force_download: bool,
        local_files_only: bool,
        token,
        map_location: str = "cpu",
        strict: bool = True,
        config: ModelConfig | dict | None = None,
        **model_kwargs,
    ):
        """Strict safetensors loading (never a pickle). The backbone's weights come from the checkpoint,
        so it is built without fetching timm's pretrained weights."""
        if config is None:
            raise FileNotFoundError(f"{model_id} has no config.json.")
        config = ModelConfig(**config) if isinstance(config, dict) else config
        model = cls(replace(config, backbone_pretrained=False, backbone_weights=None), **model_kwargs)
        if os.path.isdir(model_id):
            model_file = os.path.join(model_id, "model.safetensors")
        else:
            from huggingface_hub import hf_hub_download

            model_file = hf_hub_download(
                repo_id=model_id,
                filename="model.safetensors",
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                token=token,
                local_files_only=local_files_only,
            )
        return cls._load_as_safetensor(model, model_file, map_location, strict)

    def load_state_dict(self, *args, **kwargs):
        self._fingerprint = None
        return super().load_state_dict(*args, **kwargs)
