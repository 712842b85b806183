"""Encoder contract and the torchvision ResNet encoders (segmentation_models_pytorch style).

An encoder returns its features from shallow to deep at strides 2, 4, 8 and 16 and says their
widths in ``out_channels``; the last one is the map the bottleneck works on. Nothing here
downloads: ImageNet weights come from a local file or torchvision's cache, or not at all.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models

# name -> (torchvision constructor, feature widths at strides 2, 4, 8, 16, torchvision weight file)
_RESNETS: dict[str, tuple] = {
    "resnet18": (models.resnet18, (64, 64, 128, 256), "resnet18-f37072fd.pth"),
    "resnet34": (models.resnet34, (64, 64, 128, 256), "resnet34-b627a593.pth"),
    "resnet50": (models.resnet50, (64, 256, 512, 1024), "resnet50-0676ba61.pth"),
    "resnet101": (models.resnet101, (64, 256, 512, 1024), "resnet101-63fe2227.pth"),
}

ENCODER_NAMES = tuple(_RESNETS)


def encoder_channels(name: str) -> tuple[int, ...]:
    """Feature widths of encoder ``name`` at strides 2, 4, 8, 16 (its ``out_channels``),
    without building it: nets that size their blocks from the encoder ask here."""
    if name not in _RESNETS:
        raise ValueError(f"Unknown encoder {name!r}; available: {', '.join(ENCODER_NAMES)}")
    return _RESNETS[name][1]


class EncoderWeightsError(FileNotFoundError):
    """ImageNet weights were asked for but no local file provides them."""


class ResNetEncoder(nn.Module):
    """ResNet stem + layers 1-3: features at strides 2, 4, 8, 16 (TransUNet's R50 hybrid depth).

    Args:
        name: one of ``ENCODER_NAMES``.
        in_channels: input channels (3 for the papers' repeated grey slice).
        weights: ``None`` (random init), a path to a torchvision state_dict (``.pth`` or
            ``.safetensors``), or ``"imagenet"`` to take torchvision's standard file from its
            local cache. Nothing is downloaded.
    """

    depth = 4

    def __init__(self, name: str = "resnet50", in_channels: int = 3, weights: str | None = None):
        super().__init__()
        if name not in _RESNETS:
            raise ValueError(f"Unknown encoder {name!r}; available: {', '.join(ENCODER_NAMES)}")
        ctor, channels, self._weight_file = _RESNETS[name]
        net = ctor(weights=None)
        self.weights_source = "random"
        if weights is not None:
            self.weights_source = _load_resnet_weights(net, weights, self._weight_file)
        if in_channels != 3:
            # Keep pretrained statistics meaningful: average the RGB filters over the new inputs.
            old = net.conv1.weight.data
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            net.conv1.weight.data = old.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
        self.name = name
        self.in_channels = in_channels
        self.out_channels: tuple[int, ...] = channels
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.pool = net.maxpool
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3

    def forward(self, x: Tensor) -> list[Tensor]:
        s2 = self.stem(x)
        s4 = self.layer1(self.pool(s2))
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        return [s2, s4, s8, s16]


def _load_resnet_weights(net: nn.Module, weights: str, standard_file: str) -> str:
    """Load a torchvision ResNet state_dict from disk (never the network); returns its name."""
    if weights == "imagenet":
        path = Path(torch.hub.get_dir()) / "checkpoints" / standard_file
        if not path.is_file():
            raise EncoderWeightsError(
                f"ImageNet weights for this encoder are not on this machine and nothing is "
                f"downloaded. Put torchvision's {standard_file} at {path}, or pass "
                f"encoder_weights='/path/to/{standard_file}', or encoder_weights=None to start "
                f"from random weights."
            )
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise EncoderWeightsError(
                f"Encoder weight file {path} does not exist. Supply a torchvision ResNet "
                f"state_dict (e.g. {standard_file}) or use encoder_weights=None."
            )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(
            f"{path} is not a state_dict for this ResNet: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return path.name


def get_encoder(name: str = "resnet50", in_channels: int = 3, weights: str | None = None):
    """The one encoder builder (``segmentation_models_pytorch.encoders.get_encoder`` style)."""
    return ResNetEncoder(name, in_channels=in_channels, weights=weights)
