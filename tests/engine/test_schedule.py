import pytest

from bacl.engine.schedule import lr_factor, scaled_lr


def test_linear_scaling():
    assert scaled_lr(base_lr=0.02, base_batch_size=16, total_batch_size=8) == pytest.approx(0.01)


def test_warmup_then_steps():
    kw = dict(warmup_iters=10, warmup_factor=0.001, step_iters=[20, 30], gamma=0.1)
    assert lr_factor(0, **kw) == pytest.approx(0.001)
    assert lr_factor(5, **kw) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(10, **kw) == pytest.approx(1.0)
    assert lr_factor(19, **kw) == pytest.approx(1.0)
    assert lr_factor(20, **kw) == pytest.approx(0.1)
    assert lr_factor(30, **kw) == pytest.approx(0.01)


def test_no_warmup():
    assert lr_factor(0, warmup_iters=0, warmup_factor=0.001, step_iters=[], gamma=0.1) == 1.0
