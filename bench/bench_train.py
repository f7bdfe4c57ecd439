"""Train-step benchmark: first-step compile time, median step time and peak host memory of
the compiled YOLOX train step (forward, SimOTA loss, backward, SGD, EMA) in GRAPH_MODE.

    python bench/bench_train.py                      # yolox-s: 320 batch 4 and 640 batch 2
    python bench/bench_train.py --cases s:320:4 nano:416:8 --steps 10
    python bench/bench_train.py --loop --steps 40    # host round trips of the trainer's loop
    python bench/bench_train.py --cases nano:416:8 --freeze backbone   # train.freeze's step time

Each case runs in its own subprocess so its peak memory (``ru_maxrss``) is its own. Inputs
are synthetic images (uniform 0..255) with 8 random boxes per image, so the figures measure
the step, not the data pipeline. These are our absolute figures only: for a comparison
with the official code run ``bench/compare.py --anchor-python ...`` (interleaved rounds).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

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
    net = YOLOXWithLoss(model, YOLOXLoss(int(cfg.model.num_classes)))
    opt = build_optimizer(model, cfg.train)
    step = TrainStep(net, opt, ModelEMA(model, ema_model), loss_scale=resolve_loss_scale(str(cfg.train.loss_scale), "O0")[0])
    step.set_lr(0.01 / 64 * batch)
    rng = np.random.default_rng(0)
    images = Tensor(rng.uniform(0, 255, (batch, 3, size, size)).astype(np.float32))
    labels = np.zeros((batch, int(cfg.data.max_labels), 5), np.float32)
    for b in range(batch):
        wh = rng.uniform(0.05, 0.55, (boxes, 2)) * size
        cxy = wh / 2 + rng.uniform(0, 1, (boxes, 2)) * (size - wh)
        labels[b, :boxes] = np.concatenate([rng.integers(0, 80, (boxes, 1)), cxy, wh], 1)
    return step, images, Tensor(labels)


def run_case(variant, size, batch, steps, device, warmup=3, boxes=8, freeze=()):
    """Compile time, median / min step time and peak RSS of :func:`build_case`'s step."""
    import numpy as np
    step, images, labels = build_case(variant, size, batch, device, boxes, freeze)
    t0 = time.perf_counter()
    out = step(images, labels)
    float(out[0].asnumpy())
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):  # the first calls after compiling still settle memory pools
        float(step(images, labels)[0].asnumpy())
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        out = step(images, labels)
        float(out[0].asnumpy())
        times.append(time.perf_counter() - t0)
        print(f"  {variant} {size} b{batch}: step {i + 1}/{steps} {times[-1] * 1e3:.0f} ms", file=sys.stderr)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return {"variant": variant, "size": size, "batch": batch, "compile_s": compile_s,
            "median_step_s": float(np.median(times)), "min_step_s": float(np.min(times)),
            "peak_mem_gb": peak_gb, "steps": steps, "loss": float(out[0].asnumpy())}


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


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=["s:320:4", "s:640:2"], help="variant:size:batch")
    p.add_argument("--steps", type=int, default=8, help="timed steps (after the compile step and --warmup)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the compile step")
    p.add_argument("--device", default="CPU")
    p.add_argument("--loop", action="store_true", help="measure the trainer loop's host round trips instead")
    p.add_argument("--freeze", nargs="*", default=[], metavar="PART", help="train.freeze parts, e.g. backbone")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.loop:
        r = run_loop(args.steps, args.device)
        print(f"trainer loop, {r['steps']} steps (chunks of <= 10, a log line every 10): device reads "
              f"{r['reads']} = {r['loss_reads_per_step']:.3f}/step for the loss sums + {r['compile_syncs']} "
              f"compile sync(s) (one per input size); host lr sets {r['lr_sets']} ({r['lr_sets_per_step']:.3f}/step)")
        print("JSON " + json.dumps(r))
        return 0
    if args.one:
        v, s, b = args.one.split(":")
        print("RESULT " + json.dumps(run_case(v, int(s), int(b), args.steps, args.device, args.warmup,
                                              freeze=args.freeze)))
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
        proc = subprocess.run([sys.executable, __file__, "--one", case, "--steps", str(args.steps),
                               "--warmup", str(args.warmup), "--device", args.device, "--freeze", *args.freeze],
                              capture_output=True, text=True)
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(f"error: case {case} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
            return 1
        results.append(json.loads(lines[-1][7:]))
    if args.freeze:
        print(f"train.freeze: {args.freeze}")
    print(f"{'case':<16}{'compile s':>10}{'median step s':>15}{'min step s':>12}{'peak GB':>9}")
    for r in results:
        print(f"yolox-{r['variant']} {r['size']} b{r['batch']:<4}{r['compile_s']:>9.1f}{r['median_step_s']:>15.3f}"
              f"{r['min_step_s']:>12.3f}{r['peak_mem_gb']:>9.2f}")
    print("no ratio measured here: bench/compare.py --anchor-python PATH runs the official code side by side")
    print("JSON " + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
