"""Train-step benchmark: first-step compile time, median step time and peak host memory of
the compiled YOLOX train step (forward, SimOTA loss, backward, SGD, EMA) in GRAPH_MODE.

    python -m bench.bench_train                      # yolox-s: 320 batch 4 and 640 batch 2
    python -m bench.bench_train --cases s:320:4 nano:416:8 --steps 10
    python -m bench.bench_train --loop --steps 40    # host round trips of the trainer's loop
    python -m bench.bench_train --cases nano:416:8 --freeze backbone   # train.freeze's step time

Each case (:func:`train_step`) runs in its own subprocess (:func:`bench.harness.run_case`) so
its peak memory (VmHWM, :func:`bench.harness.peak_rss_mb`) and compile are its own. Inputs
are synthetic images (uniform 0..255) with 8 random boxes per image, so the figures measure
the step, not the data pipeline. These are our absolute figures only: for a comparison
with the official code run ``python -m bench.compare --anchor-python ...`` (interleaved rounds).
"""
import argparse
import json
import os
import sys

from bench import harness

ROOT = str(harness.ROOT)


def build_case(variant, size, batch, device, boxes=8, freeze=()):
    """The compiled-to-be train step of yolox-``variant`` (forward, SimOTA loss, backward,
    SGD, EMA; float32, GRAPH_MODE) and its synthetic inputs: images [batch, 3, size, size]
    uniform 0..255, labels [batch, 120, 5] with ``boxes`` random boxes per image (sides 5-55 %
    of the input, inside it; the official bench's rule); ``freeze``: ``train.freeze`` parts.
    Returns (step, images, labels)."""
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor

    from mindyolox import build_model, load_config
    from mindyolox.training.ema import ModelEMA
    from mindyolox.training.optimizer import build_optimizer
    from mindyolox.runtime.context import setup_mindspore
    from mindyolox.training.train_step import TrainStep, resolve_loss_scale
    from mindyolox.losses import YOLOXLoss, YOLOXWithLoss

    setup_mindspore(device)
    cfg = load_config(os.path.join(ROOT, "configs", f"yolox-{variant}.yaml"), [])
    ms.set_seed(0)
    model, ema_model = build_model(cfg), build_model(cfg)
    if freeze:
        from mindyolox.training.freeze import freeze as freeze_parts
        freeze_parts(model, list(freeze))
    model.set_train(True)
    loss = YOLOXLoss(int(cfg.model.num_classes))
    loss.use_kernels(model.options.cpu_kernels)   # as training/builder.py does
    net = YOLOXWithLoss(model, loss)
    opt = build_optimizer(model, cfg.train)
    scale = resolve_loss_scale(str(cfg.train.loss_scale), "O0")[0]
    ema = ModelEMA(model, ema_model).use_kernel(model.options.cpu_kernels)   # as training/builder.py does
    step = TrainStep(net, opt, ema, loss_scale=scale)
    step.set_lr(0.01 / 64 * batch)
    rng = np.random.default_rng(0)
    images = Tensor(rng.uniform(0, 255, (batch, 3, size, size)).astype(np.float32))
    labels = np.zeros((batch, int(cfg.data.max_labels), 5), np.float32)
    for b in range(batch):
        wh = rng.uniform(0.05, 0.55, (boxes, 2)) * size
        cxy = wh / 2 + rng.uniform(0, 1, (boxes, 2)) * (size - wh)
        labels[b, :boxes] = np.concatenate([rng.integers(0, 80, (boxes, 1)), cxy, wh], 1)
    return step, images, Tensor(labels)


def train_step(variant, size, batch, steps, device="CPU", warmup=3, boxes=8, freeze=()):
    """Case: the first call (compile), ``warmup`` untimed calls (the first calls after compiling
    still settle memory pools) and ``steps`` timed calls of :func:`build_case`'s step. A
    :func:`bench.harness.record` (``extra``: variant, size, batch, the last loss)."""
    step, images, labels = build_case(variant, size, batch, device, boxes, freeze)
    t = harness.timed(lambda: float(step(images, labels)[0].asnumpy()), steps, warmup=warmup)
    return harness.record(f"train:{variant}:{size}:{batch}", t, variant=variant, size=size, batch=batch,
                          loss=t.result, freeze=list(freeze))


def run_loop(steps, device):
    """The Trainer's loop (nano, demo data at 160, batch 8, print_interval 10) for ``steps``
    iterations: device-to-host reads and host lr sets per step."""
    import tempfile

    import mindspore as ms

    from mindyolox import load_config
    from mindyolox.training.trainer import TrainHook, Trainer
    ms.set_device(device)
    ms.set_context(mode=ms.GRAPH_MODE)
    work = tempfile.mkdtemp(prefix="bench_loop_")

    class CountLrSets(TrainHook):
        calls = 0

        def before_train(self, tr):
            original = tr.step.set_lr

            def counted(lr):
                CountLrSets.calls += 1
                return original(lr)
            tr.step.set_lr = counted

    cfg = load_config(os.path.join(ROOT, "configs", "demo", "yolox-nano-demo.yaml"),
                      [f"data.data_dir=demo:{work}/demo", "train.print_interval=10"])
    tr = Trainer(cfg, run_dir=os.path.join(work, "run"), max_iters=steps, num_workers=1, progress=False,
                 evaluate=False, hooks=[CountLrSets()])
    tr.train()
    return {"steps": tr.iters_done, "reads": tr.host_reads, "compile_syncs": len(tr.sizes_seen),
            "loss_reads_per_step": (tr.host_reads - len(tr.sizes_seen)) / tr.iters_done, "lr_sets": CountLrSets.calls,
            "reads_per_step": tr.host_reads / tr.iters_done, "lr_sets_per_step": CountLrSets.calls / tr.iters_done}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=["s:320:4", "s:640:2"], help="variant:size:batch")
    p.add_argument("--steps", type=int, default=8, help="timed steps (after the compile step and --warmup)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the compile step")
    p.add_argument("--device", default="CPU")
    p.add_argument("--loop", action="store_true", help="measure the trainer loop's host round trips instead")
    p.add_argument("--freeze", nargs="*", default=[], metavar="PART", help="train.freeze parts, e.g. backbone")
    p.add_argument("--json", help="also write the records here")
    args = p.parse_args(argv)
    if args.loop:
        r = run_loop(args.steps, args.device)
        print(f"trainer loop, {r['steps']} steps (chunks of <= 10, a log line every 10): device reads "
              f"{r['reads']} = {r['loss_reads_per_step']:.3f}/step for the loss sums + {r['compile_syncs']} "
              f"compile sync(s) (one per input size); host lr sets {r['lr_sets']} ({r['lr_sets_per_step']:.3f}/step)")
        print("JSON " + json.dumps(r))
        return 0
    results = []
    for case in args.cases:
        try:
            v, s, b = case.split(":")
            int(s), int(b)
        except ValueError:
            print(f"error: --cases expects variant:size:batch (e.g. s:320:4), got {case!r}", file=sys.stderr)
            return 2
        print(f"running {case} ...", file=sys.stderr)
        try:
            results.append(harness.run_case("bench_train", "train_step", dict(
                variant=v, size=int(s), batch=int(b), steps=args.steps, device=args.device, warmup=args.warmup,
                freeze=args.freeze)))
        except harness.CaseError as e:
            print(f"error: case {case} failed: {e.detail()}", file=sys.stderr)
            return 1
    if args.freeze:
        print(f"train.freeze: {args.freeze}")
    print(f"{'case':<16}{'compile s':>10}{'median step s':>15}{'min step s':>12}{'peak GB':>9}")
    for r in results:
        x = r["extra"]
        print(f"yolox-{x['variant']} {x['size']} b{x['batch']:<4}{r['first_s']:>9.1f}{r['median_s']:>15.3f}"
              f"{r['min_s']:>12.3f}{r['peak_rss_mb'] * 2**20 / 1e9:>9.2f}")
    print("no ratio measured here: python -m bench.compare --anchor-python PATH runs the official code side by side")
    if args.json:
        harness.write_json(args.json, results)
    print("JSON " + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(harness.main(main))
