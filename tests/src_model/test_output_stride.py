"""Output stride 8: a finer token grid from the same encoder weights (docs/design.md)."""

from __future__ import annotations

import pytest
import torch

from src_model import build_model, load_checkpoint, save_checkpoint
from src_model.encoders import get_encoder
from src_model.testing import tiny_config


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_stride_8_is_the_stride_16_map_without_its_subsampling(name):
    """The a-trous identity: with the same weights, every second row and column of the
    dilated stride-8 map is exactly the stride-16 map (a wrong dilation or padding breaks it)."""
    torch.manual_seed(0)
    coarse = get_encoder(name).double().eval()
    fine = get_encoder(name, output_stride=8).double().eval()
    fine.load_state_dict(coarse.state_dict())
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        f16, f8 = coarse(x), fine(x)
    assert [tuple(f.shape[-2:]) for f in f8] == [(32, 48), (16, 24), (8, 12), (8, 12)]
    assert [f.shape[1] for f in f8] == [f.shape[1] for f in f16]
    torch.testing.assert_close(f8[-1][..., ::2, ::2], f16[-1], rtol=1e-9, atol=1e-10)
    assert not torch.allclose(f8[-1][..., 1::2, 1::2], f16[-1], atol=1e-3)


def test_l2gnet_at_stride_8_has_four_times_the_tokens_and_a_full_size_output():
    model = build_model("l2gnet", 4, **tiny_config("l2gnet"), encoder_output_stride=8)
    assert model.output_stride == 8
    out = model(torch.randn(2, 3, 40, 56))  # a multiple of 8, not of 16
    assert out.logits.shape == (2, 4, 40, 56)
    assert out.aux["plans"].shape[2] == 5 * 7
    assert out.aux["codes"].shape == (2, 5, 7)


def test_stride_16_model_still_asks_for_multiples_of_16_and_stride_8_for_8():
    coarse = build_model("unet", 3, **tiny_config("unet"))
    fine = build_model("unet", 3, **tiny_config("unet"), encoder_output_stride=8)
    with pytest.raises(ValueError, match="multiples of 16"):
        coarse(torch.randn(1, 3, 40, 56))
    assert fine(torch.randn(1, 3, 40, 56)).logits.shape[-2:] == (40, 56)
    with pytest.raises(ValueError, match="multiples of 8"):
        fine(torch.randn(1, 3, 36, 56))


def test_an_unsupported_stride_is_refused_by_name():
    with pytest.raises(ValueError, match="encoder_output_stride must be one of"):
        build_model("unet", 3, **tiny_config("unet"), encoder_output_stride=4)


def test_stride_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model("l2gnet", 3, **tiny_config("l2gnet"), encoder_output_stride=8).eval()
    path = tmp_path / "os8.safetensors"
    save_checkpoint(path, model, None)
    loaded, meta = load_checkpoint(path)
    assert loaded.config.encoder_output_stride == 8
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x).logits, model(x).logits)
