"""Positional filter S: entries by hand, the cell-centre convention, the 2-D product form."""

from __future__ import annotations

import math

import pytest
import torch

from src_model.layers import positional_filter_1d, positional_filter_2d


def test_1d_entries_by_hand_cell_centres():
    s = positional_filter_1d(196, 16, sigma=0.5)
    assert s.shape == (196, 16) and s.dtype == torch.float32
    # token 0 at 0.5/196, bucket 0 at 0.5/16
    assert s[0, 0].item() == pytest.approx(math.exp(-((0.5 / 196 - 0.5 / 16) ** 2) / 0.25))
    # token 195 at 195.5/196, bucket 3 at 3.5/16
    assert s[195, 3].item() == pytest.approx(math.exp(-((195.5 / 196 - 3.5 / 16) ** 2) / 0.25))
    # token 97 at 97.5/196, bucket 7 at 7.5/16
    assert s[97, 7].item() == pytest.approx(math.exp(-((97.5 / 196 - 7.5 / 16) ** 2) / 0.25))


def test_1d_paper_literal_offset_zero():
    s = positional_filter_1d(10, 4, sigma=0.3, offset=0.0)
    assert s[0, 0].item() == 1.0  # i/n = j/t = 0
    assert s[9, 2].item() == pytest.approx(math.exp(-((9 / 10 - 2 / 4) ** 2) / 0.09))
    assert s[5, 2].item() == pytest.approx(1.0)  # 5/10 == 2/4


def test_cell_centres_are_symmetric_under_reversal():
    s = positional_filter_1d(50, 8, sigma=0.4)
    torch.testing.assert_close(s.flip(0).flip(1), s)
    literal = positional_filter_1d(50, 8, sigma=0.4, offset=0.0)
    assert not torch.allclose(literal.flip(0).flip(1), literal)  # i/n is biased to the start


def test_2d_is_outer_product_of_row_and_column_gaussians():
    h, w, t, sigma = 6, 5, 9, 0.5  # non-square grid, 3 x 3 buckets
    s = positional_filter_2d(h, w, t, sigma).reshape(h, w, 3, 3)
    rows = positional_filter_1d(h, 3, sigma)
    cols = positional_filter_1d(w, 3, sigma)
    torch.testing.assert_close(s, torch.einsum("rp,cq->rcpq", rows, cols))
    # one entry by hand: token (r=4, c=1) = row-major 21; bucket (p=2, q=0) = 6
    flat = positional_filter_2d(h, w, t, sigma)
    expected = math.exp(-((4.5 / 6 - 2.5 / 3) ** 2) / 0.25) * math.exp(
        -((1.5 / 5 - 0.5 / 3) ** 2) / 0.25)
    assert flat[21, 6].item() == pytest.approx(expected)
    assert flat.shape == (h * w, t)


def test_values_in_unit_interval_and_peak_where_centres_coincide():
    s = positional_filter_1d(12, 4, sigma=0.2)
    assert (s > 0).all() and (s <= 1).all()
    # bucket j's centre (j + 0.5)/4 is token (3j + 1)'s centre (3j + 1.5)/12: S = 1 there
    assert s.argmax(0).tolist() == [1, 4, 7, 10]
    torch.testing.assert_close(s[[1, 4, 7, 10], [0, 1, 2, 3]], torch.ones(4))


def test_bad_arguments():
    with pytest.raises(ValueError, match="square"):
        positional_filter_2d(4, 4, 8, 0.5)
    with pytest.raises(ValueError, match="sigma"):
        positional_filter_1d(4, 4, 0.0)
