"""Issue 28's measurements past the convolutions: SiLU, label slots, EMA/SGD, compile cache.

    python -m bench.bench_fusion silu              # SiLU forward / forward+backward, nano 416 b8 shapes
    python -m bench.bench_fusion labels            # train step per label-slot count + compile per graph
    python -m bench.bench_fusion update            # EMA and SGD update: per tensor vs one flat tensor
    python -m bench.bench_fusion cache             # first call of a fresh process, compile cache off/on

Every figure is the median of ``--steps`` calls after one untimed warm-up call
(:func:`bench.harness.timed`), measured in this process (``labels``: one case process per
case; ``cache``: fresh case processes, :func:`bench.harness.run_case`). Run it under ``flock /tmp/mindyolox-heavy.lock``
on a shared machine and compare only figures of one invocation (the variants alternate
within it).
"""
import argparse
import os
import sys
import tempfile

from bench import harness

ROOT = str(harness.ROOT)

# the SiLU inputs of a nano train step at 416 b8: the five backbone stages (channels, side)
NANO_416_ACTS = ((16, 208), (32, 104), (64, 52), (128, 26), (256, 13))


def _median_ms(fn, steps):
    """Median ms of ``steps`` calls of ``fn`` after one untimed call (the first compiles)."""
    return harness.timed(fn, steps, warmup=1, first=False).ms()


def _silu_with_bprop():
    """``nn.SiLU`` with its own ``bprop`` from the saved input (sigmoid recomputed once):
    ``decomposed`` ``dx = dy * (s + SigmoidGrad(s, x))``, ``s = sigmoid(x)`` -- Sigmoid,
    SigmoidGrad, Add, Mul, where MindSpore's expansion of ``SiLUGrad`` in the CPU train step
    runs Sigmoid, SigmoidGrad, two Mul and an Add (``bench/profile_step.py``); otherwise the
    ``SiLUGrad`` primitive (what ``nn.SiLU``'s own bprop emits)."""
    from mindspore import nn, ops
    from mindspore.ops.operations import _grad_ops

    class SiLU(nn.SiLU):
        def __init__(self, decomposed=False):
            super().__init__()
            self.decomposed = bool(decomposed)
            self.sigmoid = ops.Sigmoid()
            self.sigmoid_grad = _grad_ops.SigmoidGrad()
            self.silu_grad = _grad_ops.SiLUGrad()

        def construct(self, x):
            return ops.silu(x)

        def bprop(self, x, out, dout):
            if self.decomposed:
                s = self.sigmoid(x)
                return (dout * (s + self.sigmoid_grad(s, x)),)
            return (self.silu_grad(dout, x),)
    return SiLU


def bench_silu(steps, batch=8):
    """Median ms of the five SiLUs forward and forward+backward (dy given), native SiLU vs
    two bprop variants and the compiled kernel the model takes on CPU, alternating rounds."""
    import mindspore as ms
    import numpy as np
    from mindspore import nn, ops

    from mindyolox.runtime.context import setup_mindspore
    setup_mindspore("CPU")
    SiLU = _silu_with_bprop()
    rng = np.random.default_rng(0)
    xs = tuple(ms.Tensor(rng.normal(0, 3, (batch, c, s, s)).astype(np.float32)) for c, s in NANO_416_ACTS)
    dys = tuple(ms.Tensor(rng.normal(0, 1, (batch, c, s, s)).astype(np.float32)) for c, s in NANO_416_ACTS)

    class Five(nn.Cell):
        def __init__(self, act):
            super().__init__()
            self.acts = nn.CellList([act() for _ in NANO_416_ACTS])

        def construct(self, a, b, c, d, e):
            return (self.acts[0](a), self.acts[1](b), self.acts[2](c), self.acts[3](d), self.acts[4](e))

    class Grad(nn.Cell):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.grad = ops.GradOperation(get_all=True, sens_param=True)

        def construct(self, a, b, c, d, e, sens):
            return self.grad(self.net)(a, b, c, d, e, sens)

    def compiled():   # the model's SiLU with the compiled CPU kernel (mindyolox.ops.cpu_kernels)
        from mindyolox.models.blocks import SiLU as ModelSiLU
        act = ModelSiLU()
        act.use_kernels(True)
        return act

    variants = {"native nn.SiLU": nn.SiLU, "decomposed SiLU (bprop)": lambda: SiLU(decomposed=True),
                "SiLU primitive + bprop SiLUGrad": lambda: SiLU(decomposed=False),
                "compiled kernel (the model's)": compiled}
    res = {}
    for name, act in variants.items():
        fwd, bwd = Five(act), Grad(Five(act))
        res[name] = {"fwd": [], "fwd_bwd": []}
        res[name]["_fns"] = (lambda f=fwd: [y.asnumpy() for y in f(*xs)],
                             lambda g=bwd: [y.asnumpy() for y in g(*xs, dys)])
    for _ in range(3):  # alternate the variants
        for name in variants:
            f, g = res[name]["_fns"]
            res[name]["fwd"].append(_median_ms(f, steps))
            res[name]["fwd_bwd"].append(_median_ms(g, steps))
    out = {}
    for name in variants:
        out[name] = {k: float(np.median(res[name][k])) for k in ("fwd", "fwd_bwd")}
        print(f"{name:34s} forward {out[name]['fwd']:7.1f} ms   forward+backward {out[name]['fwd_bwd']:7.1f} ms")
    return out


def bench_labels(steps, cases):
    """Train-step median and the first call (compile) per label-slot count, one process per
    case (:func:`labels_case`): ``variant:size:batch:boxes:G1,G2,...`` -- the same batch
    sliced to G slots."""
    out = []
    for case in cases:
        v, s, b, boxes, slots = case.split(":")
        try:
            rec = harness.run_case("bench_fusion", "labels_case", dict(case=case, steps=steps))["extra"]["slots"]
        except harness.CaseError as e:
            raise SystemExit(f"error: labels case {case} failed: {e.detail()}") from None
        for g, d in rec.items():
            print(f"{v} {s} b{b}, {boxes} boxes/image, {int(g):3d} label slots: step {d['median_ms']:7.1f} ms, "
                  f"first call {d['first_s']:5.1f} s, loss {d['loss']:.6f}")
        out.append({"case": case, "slots": rec})
    return out


def labels_case(case, steps):
    """Case of :func:`bench_labels`: a record whose ``extra.slots`` maps each slot count G to
    its first call (s), loss and median step (ms over two alternating rounds)."""
    import mindspore as ms
    import numpy as np

    from bench.bench_train import build_case
    v, s, b, boxes, slots = case.split(":")
    step, images, labels = build_case(v, int(s), int(b), "CPU", boxes=int(boxes))
    full = labels.asnumpy()
    gs = [int(g) for g in slots.split(",")]
    rec = {}
    for g in gs:
        lab = ms.Tensor(np.ascontiguousarray(full[:, :g]))
        first_s, loss = harness.once(lambda: float(step(images, lab)[0].asnumpy()))
        rec[g] = {"first_s": first_s, "loss": loss, "times": []}
    for _ in range(2):  # alternate the slot counts
        for g in gs:
            lab = ms.Tensor(np.ascontiguousarray(full[:, :g]))
            rec[g]["times"].append(_median_ms(lambda: step(images, lab)[0].asnumpy(), steps))
    return harness.record(f"labels:{case}", None, slots={
        g: {"first_s": d["first_s"], "loss": d["loss"], "median_ms": float(np.median(d["times"]))}
        for g, d in rec.items()})


def _ema_variants():
    """ModelEMA subclasses whose per-tensor update uses other kernels (same formula)."""
    from mindspore import ops
    from mindyolox.training.ema import ModelEMA

    sub_agd = ops.MultitypeFuncGraph("sub_agd")
    agd = ops.ApplyGradientDescent()

    @sub_agd.register("Tensor", "Tensor", "Tensor")
    def _sub_agd(weight, ema, value):  # ema - w * (ema - value): in place, no Assign copy
        return agd(ema, weight, ema - ops.stop_gradient(value))

    mul_add = ops.MultitypeFuncGraph("mul_add")

    @mul_add.register("Tensor", "Tensor", "Tensor")
    def _mul_add(weight, ema, value):
        return ops.assign(ema, ema + weight * (ops.stop_gradient(value) - ema))

    def make(fn):
        class Variant(ModelEMA):
            UPDATE = fn
        return Variant
    return {"per tensor, Sub + ApplyGradientDescent (in place)": make(sub_agd),
            "per tensor, Sub, Mul, Add + Assign": make(mul_add)}


def bench_update(steps, variants):
    """The EMA update and the SGD update of yolox-``variant`` (its parameter list) per tensor,
    against the same update on one flat tensor of the same total size (the bound a fused,
    contiguous-buffer update could reach), and the EMA with other per-tensor kernels."""
    import mindspore as ms
    import numpy as np
    from mindspore import Parameter, Tensor, nn, ops

    from mindyolox import build_model, load_config
    from mindyolox.training.ema import ModelEMA
    from mindyolox.training.optimizer import build_optimizer
    from mindyolox.runtime.context import setup_mindspore
    setup_mindspore("CPU")
    out = {}
    for variant in variants:
        cfg = load_config(os.path.join(ROOT, "configs", f"yolox-{variant}.yaml"), [])
        model = build_model(cfg)
        ema = ModelEMA(model, build_model(cfg))
        others = {k: cls(model, build_model(cfg)) for k, cls in _ema_variants().items()}
        others["one CPU function over all tensors (EmaLerp via ctypes, in place)"] = \
            ModelEMA(model, build_model(cfg)).use_kernel()
        opt = build_optimizer(model, cfg.train)
        n_ema = sum(int(np.prod(p.shape)) for p in ema.src)
        n_opt = sum(int(np.prod(p.shape)) for p in opt.params)
        grads = tuple(Tensor(np.full(p.shape, 1e-3, np.float32)) for p in opt.params)
        lr = Tensor(0.0, ms.float32)
        on = Tensor(1.0, ms.float32)

        class FlatEMA(nn.Cell):
            def __init__(self, n):
                super().__init__()
                self.e = Parameter(Tensor(np.zeros(n, np.float32)), name="flat_e")
                self.m = Parameter(Tensor(np.ones(n, np.float32)), name="flat_m")

            def construct(self, w):
                return ops.assign(self.e, ops.lerp(self.e, self.m, w))

        class FlatSGD(nn.Cell):
            def __init__(self, n):
                super().__init__()
                self.p = Parameter(Tensor(np.zeros(n, np.float32)), name="flat_p")
                self.mom = Parameter(Tensor(np.zeros(n, np.float32)), name="flat_mom")
                self.stat = Parameter(Tensor(np.zeros(n, np.float32)), name="flat_stat")
                self.sgd = ops.SGD(0.0, 5e-4, True)

            def construct(self, g, lr):
                return self.sgd(self.p, g, lr, self.mom, Tensor(0.9, ms.float32), self.stat)

        class OptCall(nn.Cell):
            def __init__(self, o):
                super().__init__()
                self.o = o

            def construct(self, g, lr):
                return self.o(g, lr)

        # (a Concat of the model's parameters into one buffer, which an update of one flat tensor
        # would need each step, does not even compile here: the graph front end recurses past
        # its depth limit on a list of ~300 reshapes)
        flat_ema, flat_sgd, opt_call = FlatEMA(n_ema), FlatSGD(n_opt), OptCall(opt)
        g_flat = Tensor(np.full(n_opt, 1e-3, np.float32))
        fns = {f"EMA per tensor, the graph ({len(ema.src)} tensors, {n_ema / 1e6:.2f} M values)":
               lambda: ema(on).asnumpy()}
        for k, cell in others.items():
            fns[f"EMA {k}"] = lambda c=cell: c(on).asnumpy()
        fns.update({
            "EMA one flat tensor (same size), Lerp + Assign": lambda: flat_ema(Tensor(0.1, ms.float32)).asnumpy(),
            f"SGD per tensor ({len(opt.params)} tensors, {n_opt / 1e6:.2f} M values)":
                lambda: [x.asnumpy() for x in opt_call(grads, lr)[:1]],
            "SGD one flat tensor (same size)": lambda: flat_sgd(g_flat, lr).asnumpy(),
        })
        times = {k: [] for k in fns}
        for _ in range(3):
            for k, f in fns.items():
                times[k].append(_median_ms(f, steps))
        out[variant] = {k: float(np.median(v)) for k, v in times.items()}
        for k, v in out[variant].items():
            print(f"yolox-{variant}: {k:70s} {v:7.1f} ms")
    return out


def cache_probe(variant, size, batch):
    """Case of :func:`bench_cache`: build the train step of ``variant:size:batch``
    (:func:`bench.bench_train.build_case`) and time its first call. A record with ``extra``:
    ``build_s``, ``loss`` (``first_s`` is the first call)."""
    from bench.bench_train import build_case
    build_s, (step, images, labels) = harness.once(lambda: build_case(variant, size, batch, "CPU"))
    t = harness.timed(lambda: float(step(images, labels)[0].asnumpy()), 0, warmup=0)
    return harness.record(f"cache:{variant}:{size}:{batch}", t, build_s=build_s, loss=t.result)


def bench_cache(case, rounds):
    """First call of a fresh process building the train step of ``variant:size:batch``
    (:func:`cache_probe`): no cache, and with ``MS_COMPILER_CACHE_PATH`` (the first run fills
    it, the next load it). MindSpore keys the cache by the entry script, here always
    ``bench/bench_fusion.py``."""
    v, s, b = case.split(":")

    def run(env_extra):
        env = {k: x for k, x in os.environ.items() if not k.startswith("MS_COMPILER_CACHE")}
        env.update(env_extra)
        try:
            r = harness.run_case("bench_fusion", "cache_probe", dict(variant=v, size=int(s), batch=int(b)), env=env)
        except harness.CaseError as e:
            raise SystemExit(e.detail()) from None
        return {"build_s": r["extra"]["build_s"], "first_s": r["first_s"], "loss": r["extra"]["loss"]}

    rows = []
    with tempfile.TemporaryDirectory(prefix="ms_cache_bench_") as d:
        cache = {"MS_COMPILER_CACHE_ENABLE": "1", "MS_COMPILER_CACHE_PATH": os.path.join(d, "cache")}
        fill = run(cache)
        print(f"{case}: cache filling run: first call {fill['first_s']:.1f} s (build {fill['build_s']:.1f} s)")
        for i in range(rounds):
            off, on = run({}), run(cache)
            rows.append({"off": off, "on": on})
            print(f"{case} round {i + 1}: first call without cache {off['first_s']:.1f} s, from the cache "
                  f"{on['first_s']:.1f} s (loss {off['loss']:.6f} / {on['loss']:.6f})")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["silu", "labels", "update", "cache"])
    p.add_argument("cases", nargs="*")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    if args.what == "silu":
        out = bench_silu(args.steps)
    elif args.what == "labels":
        out = bench_labels(args.steps, args.cases or ["nano:160:8:4:4,8,16", "nano:416:8:8:8,32,120"])
    elif args.what == "update":
        out = bench_update(args.steps, args.cases or ["nano", "s"])
    else:
        out = {case: bench_cache(case, args.rounds) for case in args.cases or ["nano:160:8"]}
    if args.json:
        harness.write_json(args.json, {"what": args.what, "cpu": harness.cpu_line(),
                                       "versions": harness.versions(), "results": out})
    return 0


if __name__ == "__main__":
    sys.exit(harness.main(main))
