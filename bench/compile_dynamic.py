"""One train-step graph for every multiscale size? Dynamic H/W (``Cell.set_inputs``) against
the per-size static graphs (issue 35, item 6).

    python -m bench.compile_dynamic                       # nano, sizes 96 128 160, 3 steps each, batch 2
    python -m bench.compile_dynamic --sizes 96 128 160 --steps 3 --batch 2 --json out.json

Each mode runs in its own process (:func:`bench.harness.run_case`), side by side in one
sitting, from the same initial weights (``mindspore.set_seed(0)``) and the same batches (a
seeded generator: uniform 0..255 images, 8 random boxes per image scaled with the size), the
sizes in the given order, ``steps`` steps each, one model trained through all of them (as a
multiscale run):

* ``static``: the step as the trainer runs it on CPU (default device options: ``im2col``
  convolutions and the compiled CPU kernels); MindSpore compiles one graph per input shape;
* ``static-native``: the same with ``runtime.conv=native runtime.cpu_kernels=false`` (the
  device path of Ascend/GPU): the reference for the dynamic graph, same kernels;
* ``dynamic``: ``static-native`` with :func:`mindyolox.training.dynamic_shape.set_dynamic_hw`
  -- ``images`` declared ``Tensor(shape=[B, 3, None, None])``, compiled once.

Printed per mode: the compile (first call of each graph: compile + one step), the median of
the other steps per size, the number of step graphs, and the largest difference of the
per-step losses from ``static-native``'s. Run it alone (``flock /tmp/mindyolox-heavy.lock
...``): compile and step times scale with the machine's load.
"""
import argparse
import sys

from bench import harness

MODES = ("static", "static-native", "dynamic")
NATIVE = ["runtime.conv=native", "runtime.cpu_kernels=false"]


def batches(sizes, steps, batch, max_labels=120, boxes=8):
    """The seeded inputs of every step: a list of ``(size, images float32 [B, 3, size, size],
    labels float32 [B, max_labels, 5])`` (class, cx, cy, w, h px), ``steps`` per size."""
    import numpy as np
    rng = np.random.default_rng(0)
    out = []
    for size in sizes:
        for _ in range(steps):
            images = rng.uniform(0, 255, (batch, 3, size, size)).astype(np.float32)
            labels = np.zeros((batch, max_labels, 5), np.float32)
            for b in range(batch):
                wh = rng.uniform(0.05, 0.55, (boxes, 2)) * size
                cxy = wh / 2 + rng.uniform(0, 1, (boxes, 2)) * (size - wh)
                labels[b, :boxes] = np.concatenate([rng.integers(0, 80, (boxes, 1)), cxy, wh], 1)
            out.append((size, images, labels))
    return out


def run(mode, sizes, steps, batch, variant="nano"):
    """Case: train ``steps`` steps at each of ``sizes`` in ``mode`` (module doc); returns a
    :func:`bench.harness.record` whose ``extra`` holds per step the size, the loss and the
    seconds, and per size the first call (compile) and the steps' median."""
    import os

    import mindspore as ms
    from mindspore import Tensor

    from mindyolox import build_model, load_config
    from mindyolox.losses import YOLOXLoss, YOLOXWithLoss
    from mindyolox.runtime.context import setup_mindspore
    from mindyolox.training.dynamic_shape import set_dynamic_hw
    from mindyolox.training.ema import ModelEMA
    from mindyolox.training.optimizer import build_optimizer
    from mindyolox.training.train_step import TrainStep

    setup_mindspore("CPU")
    cfg = load_config(os.path.join(str(harness.ROOT), "configs", f"yolox-{variant}.yaml"),
                      [] if mode == "static" else NATIVE)
    ms.set_seed(0)
    model, ema_model = build_model(cfg), build_model(cfg)
    model.set_train(True)
    net = YOLOXWithLoss(model, YOLOXLoss(int(cfg.model.num_classes)))
    step = TrainStep(net, build_optimizer(model, cfg.train), ModelEMA(model, ema_model))
    step.set_lr(0.01 / 64 * batch)
    if mode == "dynamic":
        set_dynamic_hw(step, batch, int(cfg.data.max_labels))
    rows = []
    for size, images, labels in batches(sizes, steps, batch, int(cfg.data.max_labels)):
        seconds, loss = harness.once(lambda: float(step(Tensor(images), Tensor(labels))[0].asnumpy()))
        rows.append({"size": size, "loss": loss, "s": seconds, "graphs": step.compiled_graphs})
    per_size = {}
    for size in sizes:
        times = [r["s"] for r in rows if r["size"] == size]
        per_size[str(size)] = {"first_s": times[0], "step_s": sorted(times[1:])[len(times[1:]) // 2] if times[1:] else None}
    return harness.record(f"compile_dynamic:{mode}:{variant}:b{batch}", None, mode=mode, variant=variant, batch=batch,
                          sizes=list(sizes), steps=rows, per_size=per_size, graphs=step.compiled_graphs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 160])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--json", help="write the records to this file")
    args = p.parse_args(argv)
    print(f"yolox-nano, sizes {args.sizes}, {args.steps} steps each, batch {args.batch}; "
          f"{harness.cpu_line()}, {harness.load_info()}", flush=True)
    records = {}
    for mode in args.modes:
        records[mode] = harness.run_case("compile_dynamic", "run", {"mode": mode, "sizes": args.sizes,
                                                                     "steps": args.steps, "batch": args.batch})
    ref = records.get("static-native")
    for mode, rec in records.items():
        ex = rec["extra"]
        parts = [f"{s}: first call {v['first_s']:.1f} s, step {v['step_s'] or 0:.2f} s" for s, v in ex["per_size"].items()]
        diff = ""
        if ref is not None:
            d = max(abs(a["loss"] - b["loss"]) for a, b in zip(ex["steps"], ref["extra"]["steps"]))
            diff = f"; max |loss - static-native| {d:.3g}"
        print(f"{mode:14s} {ex['graphs']} step graph(s); " + "; ".join(parts) + diff, flush=True)
        print(f"{'':14s} losses " + " ".join(f"{r['loss']:.6f}" for r in ex["steps"]), flush=True)
    if args.json:
        harness.write_json(args.json, records)


if __name__ == "__main__":
    sys.exit(harness.main(main))
