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
OUTPUT_STRIDES = (16, 8)


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
        output_stride: stride of the deepest map, 16 (the papers) or 8. At 8, layer 3 keeps
            layer 2's resolution and its 3x3 convs after the stride are dilated by 2 (DeepLab's
            output stride 8): the bottleneck sees a token grid twice as fine on each side (16 x 16
            tokens at 128 px), with the same weights, so ImageNet files still load.
    """

    def __init__(self, name: str = "resnet50", in_channels: int = 3, weights: str | None = None,
                 output_stride: int = 16):
        super().__init__()
        if name not in _RESNETS:
            raise ValueError(f"Unknown encoder {name!r}; available: {', '.join(ENCODER_NAMES)}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
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
        self.output_stride = output_stride
        if output_stride == 8:
            _dilate_stage(self.layer3)

    def forward(self, x: Tensor) -> list[Tensor]:
        s2 = self.stem(x)
        s4 = self.layer1(self.pool(s2))
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        return [s2, s4, s8, s16]


def _dilate_stage(stage: nn.Sequential) -> None:
    """Turn a ResNet stage's stride 2 into dilation 2, in place (DeepLab's output stride 8).

    torchvision's ``replace_stride_with_dilation`` refuses the BasicBlock of ResNet-18/34,
    which the CPU configs use, so the change is made here on the built modules: the strided
    conv keeps its input's resolution, and every 3x3 conv after it is dilated by 2 (padding
    2), so it sees the same neighbours it saw on the subsampled grid. Every second row and
    column of the result is then exactly the stride-16 map (the a-trous identity; tested).
    """
    for conv in stage.modules():
        if not isinstance(conv, nn.Conv2d):
            continue
        if conv.stride != (1, 1):
            conv.stride = (1, 1)
        elif conv.kernel_size == (3, 3):
            conv.dilation, conv.padding = (2, 2), (2, 2)


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


def get_encoder(name: str = "resnet50", in_channels: int = 3, weights: str | None = None,
                output_stride: int = 16):
    """The one encoder builder (``segmentation_models_pytorch.encoders.get_encoder`` style)."""
    return ResNetEncoder(name, in_channels=in_channels, weights=weights,
                         output_stride=output_stride)
