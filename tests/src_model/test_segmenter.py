"""The shared body: shapes, input checks, gradients, registry errors."""

from __future__ import annotations

import pytest
import torch

from src_model import SegOutput, build_model, list_models
from src_model.encoders import EncoderWeightsError, get_encoder
from src_model.testing import tiny_config


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 64, 48), (1, 3, 256, 224)])
def test_unet_logits_match_input_size(shape):
    model = build_model("unet", 5, **tiny_config("unet"))
    out = model(torch.randn(shape))
    assert isinstance(out, SegOutput)
    assert out.logits.shape == (shape[0], 5, *shape[2:])
    assert float(out.aux["quant_loss"]) == 0.0


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_encoder_contract_strides_and_widths(name):
    enc = get_encoder(name)
    feats = enc(torch.randn(1, 3, 64, 32))
    assert [f.shape[1] for f in feats] == list(enc.out_channels)
    assert [tuple(f.shape[-2:]) for f in feats] == [(32, 16), (16, 8), (8, 4), (4, 2)]
    assert enc.weights_source == "random"


def test_encoder_weights_from_a_local_file(tmp_path):
    ref = get_encoder("resnet18")
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(net.state_dict(), path)
    enc = get_encoder("resnet18", weights=str(path))
    assert enc.weights_source == path.name
    assert torch.equal(enc.stem[0].weight, net.conv1.weight)
    assert not torch.equal(ref.stem[0].weight, net.conv1.weight)


def test_missing_encoder_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(EncoderWeightsError, match="resnet50-0676ba61.pth"):
        get_encoder("resnet50", weights="imagenet")
    with pytest.raises(EncoderWeightsError, match="does not exist"):
        get_encoder("resnet18", weights=str(tmp_path / "nope.pth"))


def test_input_not_multiple_of_16_is_explained():
    model = build_model("unet", 3, **tiny_config("unet"))
    with pytest.raises(ValueError, match="multiples of 16.*40 x 32|multiples of 16"):
        model(torch.randn(1, 3, 40, 30))
    with pytest.raises(ValueError, match="input channels"):
        model(torch.randn(1, 1, 32, 32))


def test_unknown_model_and_config_key_list_what_is_accepted():
    with pytest.raises(ValueError, match="Available:.*l2gnet"):
        build_model("segformer", 3)
    with pytest.raises(TypeError, match="Accepted keys:.*codebook_size"):
        build_model("l2gnet", 3, num_heads=4)
    with pytest.raises(ValueError, match="encoder="):
        build_model("unet", 3, encoder="vgg16")
    assert "l2gnet" in list_models() and "unet" in list_models()


def test_gradients_reach_the_encoder():
    model = build_model("unet", 3, **tiny_config("unet"))
    out = model(torch.randn(2, 3, 32, 32))
    out.logits.sum().backward()
    assert model.encoder.stem[0].weight.grad.abs().sum() > 0
