"""Every registered system: builds, right shapes, gradients, its own aux outputs, errors.

How long a tiny forward + backward takes is measured by benchmarks/tiny_forward_backward.py,
not asserted here.
"""

from __future__ import annotations

import pytest
import torch

from src_model import build_model, list_models
from src_model.blocks.attention_gate import AttentionGate
from src_model.blocks.disconx import HardSelfAttention
from src_model.nets.attn_unet import attention_maps
from src_model.testing import TINY_CONFIGS, tiny_config

NAMES = sorted(list_models())
QUANTISED = ("vqunet", "transvqunet", "synergynet", "l2gnet")


def test_every_registered_model_has_a_tiny_config():
    assert set(NAMES) <= set(TINY_CONFIGS)
    expected = {"unet", "attn_unet", "transunet", "r50_vit", "deeplabv3plus", "vqunet",
                "transvqunet", "synergynet", "l2gnet"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 64, 48)])
def test_tiny_forward_backward(name, shape):
    torch.manual_seed(0)
    model = build_model(name, 4, **tiny_config(name))
    out = model(torch.randn(shape))
    assert out.logits.shape == (shape[0], 4, *shape[2:])
    assert torch.isfinite(out.logits).all()
    loss = out.logits.square().mean() + out.aux["quant_loss"]
    loss.backward()
    grad = model.encoder.stem[0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", QUANTISED)
def test_quantiser_models_report_loss_and_codes(name):
    model = build_model(name, 3, **tiny_config(name))
    out = model(torch.randn(2, 3, 64, 48))
    assert float(out.aux["quant_loss"].detach()) > 0
    codes = out.aux["codes"]
    assert codes.shape == (2, 4, 3) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < 16
    assert set(out.aux["codebook_usage"]) == {"perplexity", "dead_codes"}


@pytest.mark.parametrize("name", ["unet", "attn_unet", "transunet", "r50_vit", "deeplabv3plus"])
def test_models_without_quantiser_report_zero_quant_loss(name):
    out = build_model(name, 3, **tiny_config(name))(torch.randn(1, 3, 32, 32))
    assert float(out.aux["quant_loss"]) == 0.0
    assert "codes" not in out.aux


def test_attention_maps_of_one_input_without_state_on_the_gates():
    model = build_model("attn_unet", 3, **tiny_config("attn_unet"))
    gates = [m for m in model.modules() if isinstance(m, AttentionGate)]
    assert len(gates) == 3  # one per skip (strides 8, 4, 2)
    maps = attention_maps(model, torch.randn(1, 3, 64, 48))
    assert not any(g._forward_hooks or g.psi._forward_hooks for g in gates)  # hooks removed
    assert not any(hasattr(g, "alpha") for g in gates)
    assert [tuple(a.shape) for a in maps] == [(1, 1, 8, 6), (1, 1, 16, 12), (1, 1, 32, 24)]
    assert all(float(a.min()) >= 0 and float(a.max()) <= 1 for a in maps)


def test_r50_vit_decoder_has_no_skips():
    vit = build_model("r50_vit", 3, **tiny_config("r50_vit"))
    trans = build_model("transunet", 3, **tiny_config("transunet"))
    assert not vit.decoder.use_skips and trans.decoder.use_skips
    assert sum(p.numel() for p in vit.parameters()) < sum(p.numel() for p in trans.parameters())


@pytest.mark.parametrize("name", ["transunet", "transvqunet", "r50_vit"])
def test_transformer_accepts_other_token_grids(name):
    cfg = tiny_config(name)
    assert cfg["grid_size"] == 4  # embedding sized for 64 x 64 inputs
    model = build_model(name, 3, **cfg)
    transformer = model.bottleneck
    transformer = getattr(transformer, "transformer", transformer)
    assert tuple(transformer.pos_embed.shape) == (1, 16, 32)
    for shape in [(1, 3, 64, 64), (1, 3, 96, 48), (1, 3, 32, 80)]:
        assert model(torch.randn(shape)).logits.shape == (1, 3, *shape[2:])
    same = transformer.position_embedding(4, 4)
    assert same is transformer.pos_embed
    assert transformer.position_embedding(6, 3).shape == (1, 18, 32)


@pytest.mark.parametrize("hs,hh", [(2, 2), (8, 8), (8, 2)])
def test_synergynet_head_variants(hs, hh):
    cfg = dict(tiny_config("synergynet"), hs=hs, hh=hh)
    model = build_model("synergynet", 3, **cfg)
    assert model.config.hs == hs and model.config.hh == hh
    out = model(torch.randn(2, 3, 64, 48))
    attention = out.aux["attention"]
    n = 4 * 3
    assert attention["cross"].shape == (2, hs, n, n)
    torch.testing.assert_close(attention["cross"].sum(-1), torch.ones(2, hs, n))
    assert attention["hard_index"].shape == (2, hh, n)
    assert attention["hard_index"].dtype == torch.int64


def test_synergynet_heads_must_divide_code_dim():
    with pytest.raises(ValueError, match="hs=5"):
        build_model("synergynet", 3, **dict(tiny_config("synergynet"), hs=5))


def test_hard_attention_is_one_hot_forward_with_gradients():
    torch.manual_seed(0)
    attn = HardSelfAttention(16, num_heads=2)
    x = torch.randn(1, 5, 16, requires_grad=True)
    out, index = attn(x)
    # Forward equals gathering the value of the argmax token per head.
    b, n, d = x.shape
    qkv = attn.qkv(attn.norm(x)).reshape(b, n, 3, 2, 8).permute(2, 0, 3, 1, 4)
    v = qkv[2]
    gathered = torch.gather(v, 2, index.unsqueeze(-1).expand(-1, -1, -1, 8))
    expected = attn.proj(gathered.transpose(1, 2).reshape(b, n, d))
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert attn.qkv.weight.grad is not None and attn.qkv.weight.grad.abs().sum() > 0
    # The query/key rows get a gradient too (straight-through softmax), not only the values.
    assert attn.qkv.weight.grad[:16].abs().sum() > 0


def test_deeplab_decoder_uses_the_stride4_skip():
    model = build_model("deeplabv3plus", 3, **tiny_config("deeplabv3plus"))
    assert model.decoder.low_level[0].in_channels == 64  # resnet18 stride-4 width
    assert model.bottleneck.out_channels == 32
    assert [b[0].dilation for b in model.bottleneck.branches[1:]] == [(6, 6), (12, 12), (18, 18)]


def test_unknown_name_and_config_key_list_what_is_accepted():
    with pytest.raises(ValueError, match="Available:.*synergynet"):
        build_model("swinunet", 3)
    # config_from_kwargs raises TypeError (as ``f(**kwargs)`` would) naming the accepted keys.
    for name, key in [("transunet", "hidden_size"), ("synergynet", "hh"),
                      ("deeplabv3plus", "aspp_rates"), ("transvqunet", "codebook_size")]:
        with pytest.raises(TypeError, match=f"Accepted keys:.*{key}"):
            build_model(name, 3, **dict(tiny_config(name), num_refs=4))


def test_configs_round_trip_through_dicts():
    from src_model.config import config_to_dict

    for name in NAMES:
        model = build_model(name, 3, **tiny_config(name))
        again = build_model(name, 3, **config_to_dict(model.config))
        assert again.config == model.config


EXPECTED_MILLIONS = {  # default config, num_classes=9: plausible ranges
    "unet": (40, 70),
    "attn_unet": (40, 70),
    "vqunet": (40, 70),
    "l2gnet": (40, 80),
    "synergynet": (45, 90),
    "deeplabv3plus": (25, 70),
    "transunet": (90, 180),
    "r50_vit": (90, 180),
    "transvqunet": (90, 180),
}


@pytest.mark.slow
def test_default_configs_build_with_plausible_sizes():
    for name in NAMES:
        model = build_model(name, 9)
        millions = sum(p.numel() for p in model.parameters()) / 1e6
        low, high = EXPECTED_MILLIONS[name]
        assert low < millions < high, f"{name}: {millions:.1f} M parameters"
