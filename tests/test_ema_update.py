"""The EMA update in place (``ema -= (1 - d) * (ema - model)``, mindyolox/training/ema.py) is as
close to the exact update (float64) as the former ``Assign(ema, Lerp(ema, model, 1 - d))``,
over several updates of a nano model's parameters including BN statistics; ``on = 0`` leaves
every value bit-identical."""
import numpy as np
from mindspore import Tensor, ops
from mindspore import dtype as mstype

from mindyolox import build_model, load_config
from mindyolox.training.ema import ModelEMA


def test_in_place_ema_is_as_exact_as_the_lerp_update():
    cfg = load_config("configs/yolox-nano.yaml", ["model.num_classes=2"])
    model = build_model(cfg)
    ema = ModelEMA(model, build_model(cfg), decay=0.99, tau=2.0)  # weights 0.6 .. 0.06: both lerp branches
    rng = np.random.default_rng(0)
    exact = [e.asnumpy().astype(np.float64) for e in ema.ema]
    lerp = [e.asnumpy().copy() for e in ema.ema]
    err_ours = err_lerp = 0.0
    for _ in range(3):
        for p in ema.src:
            p.set_data(Tensor((p.asnumpy() + rng.normal(0, 0.5, p.shape)).astype(np.float32)))
        d = float(ema().asnumpy())                       # the decay the graph used (float32)
        w = Tensor(np.float32(1.0) - np.float32(d), mstype.float32)
        lerp = [ops.lerp(Tensor(r), Tensor(p.asnumpy()), w).asnumpy() for r, p in zip(lerp, ema.src)]
        exact = [x + float(w.asnumpy()) * (p.asnumpy() - x) for x, p in zip(exact, ema.src)]
        err_ours = max(err_ours, max(float(np.abs(e.asnumpy() - x).max()) for e, x in zip(ema.ema, exact)))
        err_lerp = max(err_lerp, max(float(np.abs(r - x).max()) for r, x in zip(lerp, exact)))
    assert 0 < err_ours < 4e-6 and err_ours <= 2 * err_lerp, (err_ours, err_lerp)   # float32 rounding
    before = [e.asnumpy().copy() for e in ema.ema]
    ema(Tensor(0.0, mstype.float32))
    assert all(np.array_equal(e.asnumpy(), b) for e, b in zip(ema.ema, before))
    assert float(ema.updates.asnumpy()) == 3.0
