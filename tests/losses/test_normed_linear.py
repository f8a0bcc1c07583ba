"""The cosine classifier of Seesaw and ECM against a loop over rows and outputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bacl.losses import LossArgumentError
from bacl.losses.normed_linear import NormedLinear


def test_matches_loop():
    torch.manual_seed(0)
    layer = NormedLinear(4, 3, temperature=7.0)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.5, -1.0, 0.0]))
    x = torch.randn(5, 4)
    out = layer(x).detach()
    weight, bias = layer.weight.detach(), layer.bias.detach()
    for i in range(5):
        for k in range(3):
            w = weight[k].tolist()
            xi = x[i].tolist()
            dot = sum(a * b for a, b in zip(w, xi))
            norm_w = math.sqrt(sum(a * a for a in w)) + 1e-6
            norm_x = math.sqrt(sum(a * a for a in xi)) + 1e-6
            expected = 7.0 * dot / (norm_w * norm_x) + float(bias[k])
            assert float(out[i, k]) == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_init_shape_and_bounds():
    torch.manual_seed(0)
    layer = NormedLinear(256, 100)
    assert isinstance(layer, nn.Linear) and layer.in_features == 256 and layer.out_features == 100
    assert layer.bias.abs().max() == 0
    assert layer.weight.std().item() == pytest.approx(0.01, rel=0.05)
    out = layer(torch.randn(8, 256) * 50)
    assert out.abs().max() <= 20.0 + 1e-4  # |cosine| <= 1, bias 0
    assert layer(torch.zeros(2, 256)).abs().max() == 0  # a zero embedding stays finite
    assert "temperature=20.0" in repr(layer)


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"eps": -1.0}])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(LossArgumentError):
        NormedLinear(4, 3, **kwargs)
