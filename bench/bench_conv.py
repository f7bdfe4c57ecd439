"""Microbenchmark of the model's own k x k convolutions on CPU: the model's path
(:class:`mindyolox.models.conv.Conv2d` with ``im2col``; ``kernel``: the model's default
training path on CPU -- its depthwise layers with the compiled CPU kernel of
:mod:`mindyolox.ops.cpu_kernels`, its dense layers through oneDNN's convolution primitives,
:mod:`mindyolox.ops.dnnl_conv`),
the candidates of
``bench/conv_candidates.py`` (``winograd``, ``winograd_mm``, ``im2col_bprop``, ``shift``) and,
on request, MindSpore's native CPU ``Conv2D`` (``native``), against PyTorch's direct
convolution of the same shapes, forward and forward+backward, GRAPH_MODE, in interleaved
rounds (ours, PyTorch, ours, ...).

    python -m bench.bench_conv --anchor-python /tmp/anchor-venv/bin/python        # 3 train cases
    python -m bench.bench_conv --cases train:nano:416:8 --reps 3 --rounds 1        # ours only
    python -m bench.bench_conv --cases train:s:640:2 --paths im2col native --max-shapes 1

The shapes are those of the model's k x k convolutions (1x1 convolutions run natively on
every path and are left out): one PyNative forward of the model (batch 1, train mode) with a
pre-hook on each :class:`~mindyolox.models.conv.Conv2d` records (cin, cout, k, stride,
groups, H, W); the case's batch is then applied. A case is ``train:variant:size:batch`` as
in ``bench.compare`` (its three default train cases are the default here).

Per shape and path: a compiled forward ``conv(x)`` and a compiled forward+backward (the
gradients of ``x`` and of the weight for a fixed random output gradient), each the median of
``--reps`` calls after one untimed call. PyTorch (``--anchor-python``: the official anchor's
venv, any torch on CPU) runs ``F.conv2d`` and its ``autograd`` backward of the same shapes
in a case process of that interpreter (:func:`torch_conv_times`; ``torch.set_num_threads``
left at its default -- the case process gets Python's environment, without the
``OMP_NUM_THREADS=1`` MindSpore sets in this one, :func:`bench.harness.run_process` -- and
the table says how many threads it used). The table lists per shape
the number of layers of that shape in each case, the times, the ratio of each path to
PyTorch (medians over rounds), and the fastest path; the summary sums layers x time per case
(the k x k convolution time of one train step) per path and for the per-shape best.
Before timing, every candidate's forward and gradients are checked against the ``im2col``
path on the same data (relative error < 1e-5, else the run stops). "call overhead" is the
time of a compiled graph that adds 1 to a 1-element tensor: per-call cost included in
every small shape's figure, absent inside a train step's single graph.
Absolute times drift on a shared machine: compare only ratios from one invocation.
"""
import argparse
import os
import statistics
import sys

from bench import harness

ROOT = str(harness.ROOT)
DEFAULT_CASES = ["train:s:320:4", "train:s:640:2", "train:nano:416:8"]
ALL_PATHS = ("im2col", "kernel", "winograd", "winograd_mm", "im2col_bprop", "shift", "native")


def torch_conv_times(shapes, reps):
    """Case, run by a python with torch (``--anchor-python``): per ``[b, cin, cout, k, s, g, h,
    w]`` of ``shapes``, PyTorch's ``F.conv2d`` forward (no grad) and forward + ``autograd.grad``
    of x and the weight for a fixed random dy, ms, each the median of ``reps`` calls after one
    untimed. Returns a record with ``extra.times``: ``[[fwd ms, fwd+bwd ms], ...]``."""
    import torch
    import torch.nn.functional as F
    torch.manual_seed(0)
    out = []
    for b, cin, cout, k, s, g, h, w in shapes:
        x = torch.rand(b, cin, h, w, requires_grad=True)
        wt = torch.rand(cout, cin // g, k, k, requires_grad=True)
        p = (k - 1) // 2

        def fwd():
            with torch.no_grad():
                return F.conv2d(x, wt, None, s, p, 1, g)
        dy = torch.rand_like(F.conv2d(x, wt, None, s, p, 1, g))

        def fwdbwd():
            return torch.autograd.grad(F.conv2d(x, wt, None, s, p, 1, g), (x, wt), dy)
        out.append([harness.timed(fn, reps, warmup=1, first=False).ms() for fn in (fwd, fwdbwd)])
    return harness.record("torch conv2d", None, times=out, threads=torch.get_num_threads())


def parse_case(case):
    """``train:variant:size:batch`` -> (variant, size, batch); a clear error otherwise."""
    try:
        kind, variant, size, batch = case.split(":")
        if kind != "train":
            raise ValueError
        return variant, int(size), int(batch)
    except ValueError:
        raise SystemExit(f"error: a case is train:variant:size:batch (e.g. train:s:320:4), got {case!r}") from None


def model_conv_shapes(variant, size):
    """{(cin, cout, k, stride, groups, H, W): number of layers} of yolox-``variant``'s k x k
    (k > 1) convolutions at input ``size`` (one PyNative forward, batch 1)."""
    import mindspore as ms
    import numpy as np
    from mindyolox import build_model, load_config
    from mindyolox.models.conv import Conv2d
    ms.set_context(mode=ms.PYNATIVE_MODE)
    model = build_model(load_config(os.path.join(ROOT, "configs", f"yolox-{variant}.yaml"), []))
    model.set_train(True)
    counts, handles = {}, []

    def hook(cell, inputs):
        _, c, h, w = inputs[0].shape
        key = (c, cell.out_channels, cell.k, cell.s, cell.group, h, w)
        counts[key] = counts.get(key, 0) + 1

    for _, cell in model.cells_and_names():
        if isinstance(cell, Conv2d) and cell.k > 1:
            handles.append(cell.register_forward_pre_hook(hook))
    model(ms.Tensor(np.random.default_rng(0).uniform(0, 255, (1, 3, size, size)).astype(np.float32)))
    for h in handles:
        h.remove()
    ms.set_context(mode=ms.GRAPH_MODE)
    return counts


def applicable(shape, paths):
    """The paths of ``paths`` that apply to a (cin, cout, k, stride, groups, H, W) shape."""
    from bench.conv_candidates import applies
    cin, cout, k, s, g, _, _ = shape
    from mindyolox.ops.cpu_kernels import geometry_supported
    kernel = (g == 1 or g == cin == cout) and geometry_supported(k, s, (k - 1) // 2)
    return [p for p in paths if p in ("im2col", "native") or (kernel if p == "kernel" else applies(p, cin, cout, k, s, g))]


class Timer:
    """Compiled forward and forward+backward of one conv shape on one path (kept across rounds)."""

    def __init__(self, batch, shape, path):
        import mindspore as ms
        import numpy as np
        from mindspore import nn, ops
        from bench.conv_candidates import CandidateConv
        from mindyolox.models.conv import Conv2d
        cin, cout, k, s, g, h, w = shape
        conv = Conv2d(cin, cout, k, s, padding=(k - 1) // 2, group=g)
        conv.use_impl("native" if path == "native" else "im2col", kernels=path == "kernel")
        conv.set_train(True)   # the training path (``kernel``: a dense layer through oneDNN's primitives)
        if path not in ("im2col", "native", "kernel"):
            conv = CandidateConv(conv, path)
        rng = np.random.default_rng(0)
        self.x = ms.Tensor(rng.uniform(0, 1, (batch, cin, h, w)).astype(np.float32))
        pad = (k - 1) // 2
        ho, wo = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        self.dy = ms.Tensor(rng.uniform(0, 1, (batch, cout, ho, wo)).astype(np.float32))
        weights = ms.ParameterTuple(conv.trainable_params())

        class FwdBwd(nn.Cell):
            def __init__(self):
                super().__init__()
                self.conv = conv
                self.grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)

            def construct(self, x, dy):
                return self.grad(self.conv, weights)(x, dy)

        self.fwd, self.fwdbwd = conv, FwdBwd()

    def check_against(self, ref):
        """Forward and gradients equal ``ref``'s (the im2col Timer of the same shape and data,
        same initial weight) to 1e-5 of the largest magnitude; SystemExit otherwise."""
        import numpy as np
        self.fwd.weight.set_data(ref.fwd.weight.data)
        ours = [self.fwd(self.x)] + list(self.fwdbwd(self.x, self.dy)[0]) + list(self.fwdbwd(self.x, self.dy)[1])
        theirs = [ref.fwd(ref.x)] + list(ref.fwdbwd(ref.x, ref.dy)[0]) + list(ref.fwdbwd(ref.x, ref.dy)[1])
        for name, a, b in zip(("y", "dx", "dw"), ours, theirs):
            a, b = a.asnumpy(), b.asnumpy()
            err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
            if err > 1e-5:
                raise SystemExit(f"error: candidate differs from im2col in {name}: relative error {err:.1e}")

    def time(self, reps):
        """(forward ms, forward+backward ms): medians of ``reps`` calls after one untimed."""
        def call(fn, args):
            def run():
                out = fn(*args)
                (out[0][0] if isinstance(out, tuple) else out).asnumpy()
            return run
        return [harness.timed(call(fn, args), reps, warmup=1, first=False).ms()
                for fn, args in ((self.fwd, (self.x,)), (self.fwdbwd, (self.x, self.dy)))]


def call_overhead(reps):
    """ms of one call of a compiled graph that adds 1 to a 1-element tensor (median)."""
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    class AddOne(nn.Cell):
        def construct(self, x):
            return x + 1

    net, x = AddOne(), ms.Tensor(np.zeros(1, np.float32))
    return harness.timed(lambda: net(x).asnumpy(), max(reps, 5), warmup=1, first=False).ms()


def run_torch(python, jobs, reps):
    """PyTorch [fwd ms, fwd+bwd ms] per (batch, shape) of ``jobs``: :func:`torch_conv_times` in
    a case process of ``python``."""
    try:
        r = harness.run_case("bench_conv", "torch_conv_times", dict(shapes=[[b, *shape] for b, shape in jobs],
                                                                    reps=reps), python=python)
    except harness.CaseError as e:
        raise SystemExit(f"error: the PyTorch side failed: {e.detail()}") from None
    print(f"PyTorch side: {r['extra']['threads']} threads (torch.get_num_threads())", flush=True)
    return r["extra"]["times"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES)
    p.add_argument("--paths", nargs="+", default=["im2col", "kernel", "winograd", "winograd_mm", "im2col_bprop", "shift"],
                   choices=ALL_PATHS,
                   help="our paths to time (native: MindSpore's CPU Conv2D, oneDNN's reference kernel: slow)")
    p.add_argument("--anchor-python", help="a python with torch: PyTorch's direct conv of the same shapes")
    p.add_argument("--reps", type=int, default=5, help="timed calls per measurement (median)")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds (ours, PyTorch)")
    p.add_argument("--max-shapes", type=int, default=0, help="only the N largest shapes (by FLOPs); 0: all")
    p.add_argument("--kinds", nargs="+", default=["dense", "depthwise"], choices=["dense", "depthwise"],
                   help="only these kinds of convolution")
    p.add_argument("--json", help="write the raw figures here")
    args = p.parse_args(argv)

    from mindyolox.runtime.context import setup_mindspore
    setup_mindspore("CPU")
    jobs = {}   # (batch, shape) -> {case: layers}
    for case in args.cases:
        variant, size, batch = parse_case(case)
        for shape, n in model_conv_shapes(variant, size).items():
            jobs.setdefault((batch, shape), {})[case] = n
    order = sorted(jobs, key=lambda j: -j[0] * j[1][1] * j[1][2] * j[1][5] * j[1][6] // j[1][4] // j[1][3] ** 2)
    order = [j for j in order if ("depthwise" if j[1][4] > 1 else "dense") in args.kinds]
    if args.max_shapes:
        order = order[:args.max_shapes]
    print(f"{len(order)} distinct k x k conv shapes in {', '.join(args.cases)}", flush=True)
    if "im2col" in args.paths:   # the reference of the candidates' check comes first
        args.paths = ["im2col"] + [p for p in args.paths if p != "im2col"]
    overhead = call_overhead(args.reps)
    timers, ours, torch_t = {}, {}, {}
    for rnd in range(args.rounds):
        for i, job in enumerate(order):
            for path in applicable(job[1], args.paths):
                if (job, path) not in timers:
                    timers[job, path] = Timer(job[0], job[1], path)
                    if path not in ("im2col", "native") and (job, "im2col") in timers:
                        timers[job, path].check_against(timers[job, "im2col"])
                ours.setdefault((job, path), []).append(timers[job, path].time(args.reps))
            print(f"round {rnd + 1} ours {i + 1}/{len(order)} {job}", flush=True)
        if args.anchor_python:
            for job, rec in zip(order, run_torch(args.anchor_python, order, args.reps)):
                torch_t.setdefault(job, []).append(rec)
            print(f"round {rnd + 1} torch done", flush=True)

    def med(recs, i):
        return statistics.median(r[i] for r in recs)

    head = f"{'B':>2} {'cin':>4} {'cout':>4} k s {'g':>4} {'HxW':>9} | layers | path          fwd ms  f+b ms"
    head += "  | torch fwd  f+b | ratio fwd  f+b" if args.anchor_python else ""
    print(f"\ncall overhead (a compiled 1-element add): {overhead:.2f} ms")
    print(head)
    rows, best = [], {}
    for job in order:
        b, (cin, cout, k, s, g, h, w) = job
        layers = " ".join(f"{jobs[job].get(c, 0)}" for c in args.cases)
        fb = {path: med(ours[job, path], 1) for path in applicable(job[1], args.paths)}
        best[job] = min(fb, key=fb.get)
        for path in fb:
            line = (f"{b:>2} {cin:>4} {cout:>4} {k} {s} {g:>4} {f'{h}x{w}':>9} | {layers:>6} | "
                    f"{path + (' *' if path == best[job] else ''):<12} {med(ours[job, path], 0):7.2f} {fb[path]:7.2f}")
            rec = {"batch": b, "shape": [cin, cout, k, s, g, h, w], "layers": jobs[job], "path": path,
                   "fwd_ms": med(ours[job, path], 0), "fwdbwd_ms": fb[path]}
            if args.anchor_python:
                tf, tb = med(torch_t[job], 0), med(torch_t[job], 1)
                rf = statistics.median(o[0] / t[0] for o, t in zip(ours[job, path], torch_t[job]))
                rb = statistics.median(o[1] / t[1] for o, t in zip(ours[job, path], torch_t[job]))
                line += f"  | {tf:7.2f} {tb:7.2f} | {rf:5.2f}x {rb:5.2f}x"
                rec.update(torch_fwd_ms=tf, torch_fwdbwd_ms=tb, ratio_fwd=rf, ratio_fwdbwd=rb)
            rows.append(rec)
            print(line)
    print("\nk x k conv forward+backward per train step (sum of layers x time, ms; a path's total "
          "takes im2col where it does not apply):")
    for case in args.cases:
        totals = {}
        for job in order:
            n = jobs[job].get(case, 0)
            ok = applicable(job[1], args.paths)
            for path in args.paths + ["best"]:
                use = best[job] if path == "best" else path if path in ok else "im2col" if "im2col" in ok else None
                if use is not None:
                    totals[path] = totals.get(path, 0.0) + n * med(ours[job, use], 1)
            if args.anchor_python:
                totals["torch"] = totals.get("torch", 0.0) + n * med(torch_t[job], 1)
        print(f"  {case}: " + ", ".join(f"{k} {v:.0f}" for k, v in totals.items()))
    if args.json:
        harness.write_json(args.json, {"cpu": harness.cpu_line(), "versions": harness.versions(), "rows": rows,
                                       "call_overhead_ms": overhead})


if __name__ == "__main__":
    sys.exit(harness.main(main))
