"""The EMA update in place (``ema -= (1 - d) * (ema - model)``, mindyolox/training/ema.py) is as
close to the exact update (float64) as the former ``Assign(ema, Lerp(ema, model, 1 - d))``,
over several updates of a nano model's parameters including BN statistics; ``on = 0`` leaves
every value bit-identical. Both paths: the compiled EMA graph and the CPU kernel that writes
the Parameters in place (read back through ``asnumpy`` and through a compiled graph)."""
import numpy as np
import pytest
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from mindyolox import build_model, load_config
from mindyolox.training.ema import ModelEMA


class _Sum(nn.Cell):
    """A compiled graph reading Parameter ``p``: its sum (float64 on the host after)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def construct(self):
        return self.p * 1.0


@pytest.mark.parametrize("kernel", [False, True], ids=["graph", "kernel"])
def test_in_place_ema_is_as_exact_as_the_lerp_update(kernel):
    cfg = load_config("configs/yolox-nano.yaml", ["model.num_classes=2"])
    model = build_model(cfg)
    ema = ModelEMA(model, build_model(cfg), decay=0.99, tau=2.0).use_kernel(kernel)  # weights 0.6 .. 0.06
    assert (ema.kernel is not None) == kernel
    rng = np.random.default_rng(0)
    exact = [e.asnumpy().astype(np.float64) for e in ema.ema]
    lerp = [e.asnumpy().copy() for e in ema.ema]
    err_ours = err_lerp = 0.0
    for k in range(3):
        for p in ema.src:
            p.set_data(Tensor((p.asnumpy() + rng.normal(0, 0.5, p.shape)).astype(np.float32)))
        d = float(ema().asnumpy())                       # the decay used (float32)
        assert abs(d - 0.99 * (1 - np.exp(-(k + 1) / 2.0))) < 1e-6
        w = Tensor(np.float32(1.0) - np.float32(d), mstype.float32)
        lerp = [ops.lerp(Tensor(r), Tensor(p.asnumpy()), w).asnumpy() for r, p in zip(lerp, ema.src)]
        exact = [x + float(w.asnumpy()) * (p.asnumpy() - x) for x, p in zip(exact, ema.src)]
        err_ours = max(err_ours, max(float(np.abs(e.asnumpy() - x).max()) for e, x in zip(ema.ema, exact)))
        err_lerp = max(err_lerp, max(float(np.abs(r - x).max()) for r, x in zip(lerp, exact)))
    assert 0 < err_ours < 4e-6 and err_ours <= 2 * err_lerp, (err_ours, err_lerp)   # float32 rounding
    biggest = max(ema.ema, key=lambda e: e.size)
    np.testing.assert_array_equal(_Sum(biggest)().asnumpy(), biggest.asnumpy())  # graphs see the same memory
    before = [e.asnumpy().copy() for e in ema.ema]
    ema(Tensor(0.0, mstype.float32))
    assert all(np.array_equal(e.asnumpy(), b) for e, b in zip(ema.ema, before))
    assert float(ema.updates.asnumpy()) == 3.0
