"""Compile budget of a multiscale run: how many train-step graphs it compiles and what each
costs (issue 24, deliverable 9).

    python -m bench.compile_budget                         # yolox-s, the recipe's 11 sizes, batch 1
    python -m bench.compile_budget --variant nano --sizes 320 416 --batch 2

A multiscale run compiles one train-step graph per input size it meets (MindSpore caches a
graph per input shape), plus one EMA-update graph (shape-independent; none with the CPU
kernels, ``mindyolox/training/ema.py``) and one evaluation
graph per test size. This builds the step once (:func:`bench.bench_train.build_case`, synthetic
inputs) and, at each size of the recipe's multiscale range, compiles it (``Cell.compile``,
as ``train.py --precompile`` does: nothing runs), then calls it twice, printing per size the
compile time, the first and the second step and the number of graphs the step holds (the
first step after the compile shows whether it found the compiled graph). Run it alone (``flock /tmp/mindyolox-heavy.lock ...`` on a shared machine):
compile times scale with the CPU's load.
"""
import argparse
import os
import sys

from bench import harness

ROOT = str(harness.ROOT)


def recipe_sizes(variant):
    """The square input sizes a multiscale run of recipe ``yolox-<variant>`` can draw."""
    from mindyolox import load_config
    from mindyolox.data.loader import multiscale_range
    cfg = load_config(os.path.join(ROOT, "configs", f"yolox-{variant}.yaml"), [])
    rng = multiscale_range(cfg.data)
    base = int(cfg.data.input_size[0])
    return [base] if rng is None else [32 * k for k in range(rng[0], rng[1] + 1)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="s")
    p.add_argument("--sizes", type=int, nargs="*", help="input sizes (default: the recipe's multiscale range)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="CPU")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    import numpy as np
    from mindspore import Tensor

    from bench.bench_train import build_case
    sizes = args.sizes or recipe_sizes(args.variant)
    print(f"yolox-{args.variant}: {len(sizes)} input size(s) {sizes}, batch {args.batch}", flush=True)
    build_s, (step, _, labels) = harness.once(lambda: build_case(args.variant, sizes[0], args.batch, args.device))
    rows = []
    rng = np.random.default_rng(0)
    for size in sizes:
        images = Tensor(rng.uniform(0, 255, (args.batch, 3, size, size)).astype(np.float32))
        lab = Tensor(labels.asnumpy() * np.array([1] + [size / sizes[0]] * 4, np.float32))
        comp, _ = harness.once(lambda: step.compile(images, lab))  # what --precompile does: nothing runs
        t = harness.timed(lambda: float(step(images, lab)[0].asnumpy()), 1, warmup=0)
        first, again = t.first_s, t.median_s
        rows.append({"size": size, "compile_s": comp, "first_call_s": first, "step_s": again,
                     "graphs": step.compiled_graphs})
        print(f"  {size}x{size}: compile {comp:.1f} s, first step {first:.2f} s, next step {again:.2f} s "
              f"({step.compiled_graphs} step graph(s))", flush=True)
    total = sum(r["compile_s"] for r in rows)
    print(f"total: {len(rows)} step graphs{' + 1 EMA graph' if step.ema_graph else ''}, ~{total:.0f} s of compiling "
          f"(model build {build_s:.1f} s)", flush=True)
    if args.json:
        harness.write_json(args.json, harness.record(f"compile:{args.variant}:b{args.batch}", None, variant=args.variant,
                                                     batch=args.batch, build_s=build_s, sizes=rows))


if __name__ == "__main__":
    sys.exit(harness.main(main))
