"""L2GNet on the shared body: aux outputs, gradients, paper defaults, non-square inputs."""

from __future__ import annotations

import pytest
import torch

from src_model import build_model
from src_model.testing import tiny_config


@pytest.fixture
def tiny():
    return build_model("l2gnet", 4, **tiny_config("l2gnet"))


@pytest.mark.parametrize("hw", [(32, 32), (64, 48), (256, 224)])
def test_outputs_and_aux_shapes(tiny, hw):
    out = tiny(torch.randn(2, 3, *hw))
    h, w = hw[0] // 16, hw[1] // 16
    cfg = tiny.config
    assert out.logits.shape == (2, 4, *hw)
    assert out.aux["codes"].shape == (2, h, w) and out.aux["codes"].dtype == torch.int64
    assert int(out.aux["codes"].max()) < cfg.codebook_size
    assert out.aux["plans"].shape == (2, cfg.num_refs, h * w, cfg.ref_size)
    assert (out.aux["plans"] >= 0).all()
    assert out.aux["quant_loss"].ndim == 0 and float(out.aux["quant_loss"].detach()) > 0
    usage = out.aux["codebook_usage"]
    assert 1.0 <= float(usage["perplexity"]) <= cfg.codebook_size


def test_gradients_reach_references_anchors_codebook_and_encoder(tiny):
    out = tiny(torch.randn(2, 3, 32, 32))
    (out.logits.square().mean() + out.aux["quant_loss"]).backward()
    mapper = tiny.bottleneck.mapper
    named = dict(tiny.named_parameters())
    codebook = [p for n, p in named.items() if "quantizer" in n]
    assert mapper.references.grad is not None and mapper.references.grad.abs().sum() > 0
    anchors = [p for n, p in mapper.embed.named_parameters()]
    assert anchors and all(p.grad is not None and p.grad.abs().sum() > 0 for p in anchors)
    assert codebook and any(p.grad is not None and p.grad.abs().sum() > 0 for p in codebook)
    assert tiny.encoder.stem[0].weight.grad.abs().sum() > 0


def test_paper_default_config():
    model = build_model("l2gnet", 9)
    cfg = model.config
    paper = ("resnet50", 512, 1024, 4)
    assert (cfg.encoder, cfg.codebook_size, cfg.code_dim, cfg.num_refs) == paper
    assert cfg.sinkhorn_iters == 10
    assert model.encoder.out_channels[-1] == 1024
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = model.eval()(x)
    assert out.aux["plans"].shape == (1, 4, 4, cfg.ref_size)


def test_q2_is_expressible():
    model = build_model("l2gnet", 3, **{**tiny_config("l2gnet"), "num_refs": 2})
    assert model(torch.randn(1, 3, 32, 32)).aux["plans"].shape[1] == 2


def test_eval_mode_is_deterministic(tiny):
    tiny.eval()
    x = torch.randn(1, 3, 48, 32)
    with torch.no_grad():
        assert torch.equal(tiny(x).logits, tiny(x).logits)
