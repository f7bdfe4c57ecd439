"""Benchmark the YOLOX loss (SimOTA + terms) against a full training step, GRAPH_MODE.

Prints, for yolox-s at ``--size`` (640), batch ``--batch`` (8), ``--max-labels`` (120):
* the loss forward+backward time (d total / d head outputs, the part of a training step
  the loss owns) and the peak resident memory it adds (ru_maxrss growth of this process,
  MiB; measured before anything else is compiled, so it is the loss alone);
* the full training step time (model forward, loss, backward, SGD update) and the share
  of that step the loss takes.

    python bench/bench_loss.py [--size 640] [--batch 8] [--max-labels 120] [--gts 40]
"""
import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mindspore as ms  # noqa: E402
from mindspore import Tensor, nn  # noqa: E402

from mindyolox import build_model  # noqa: E402
from mindyolox.losses import YOLOXLoss, YOLOXWithLoss  # noqa: E402

S = {"backbone": "cspdarknet", "depth": 0.33, "width": 0.50, "depthwise": False}


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_labels(batch, max_labels, n_gts, size, seed=0):
    """[B, max_labels, 5] (class, cx, cy, w, h) px: ``n_gts`` random boxes per image."""
    rng = np.random.RandomState(seed)
    labels = np.zeros((batch, max_labels, 5), np.float32)
    for b in range(batch):
        wh = np.exp(rng.uniform(np.log(6), np.log(size * 0.6), (n_gts, 2)))
        xy = rng.uniform(0, size, (n_gts, 2))
        labels[b, :n_gts] = np.concatenate([rng.randint(0, 80, (n_gts, 1)), xy, wh], 1)
    return labels


def grid(size, strides=(8, 16, 32)):
    grids, out = [], []
    for s in strides:
        n = size // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], 1))
        out.append(np.full(n * n, s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(out).astype(np.float32)


def timed(fn, repeat):
    """Median wall time of ``fn`` (which returns numpy, so the work is finished) after a warm-up."""
    fn()  # compile + warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        del out
    return float(np.median(times))


class StepCell(nn.Cell):
    """Forward + loss + backward + SGD update in one compiled graph."""

    def __init__(self, net, optimizer):
        super().__init__()
        self.net = net
        self.optimizer = optimizer
        self.grad_fn = ms.value_and_grad(net, None, optimizer.parameters, has_aux=True)

    def construct(self, images, labels, use_l1):
        vals, grads = self.grad_fn(images, labels, use_l1)
        self.optimizer(grads)
        return vals[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-labels", type=int, default=120)
    ap.add_argument("--gts", type=int, default=40, help="real boxes per image")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)

    size, batch = args.size, args.batch
    grids, strides = grid(size)
    n_anchors = len(strides)
    rng = np.random.RandomState(1)
    raw = np.concatenate([rng.normal(0, 0.5, (batch, n_anchors, 4)),
                          rng.normal(-4, 1.5, (batch, n_anchors, 81))], 2).astype(np.float32)
    labels = make_labels(batch, args.max_labels, args.gts, size)
    use_l1 = Tensor(1.0, ms.float32)

    loss = YOLOXLoss(80)

    class LossOnly(nn.Cell):
        def __init__(self):
            super().__init__()
            self.loss = loss

        def construct(self, r, g, s, lab, l1):
            return self.loss(r, g, s, lab, l1)["total"]

    loss_grad = ms.value_and_grad(LossOnly(), grad_position=0)
    inputs = [Tensor(raw), Tensor(grids), Tensor(strides), Tensor(labels), use_l1]
    rss0 = rss_mib()
    t_loss = timed(lambda: loss_grad(*inputs)[1].asnumpy(), args.repeat)
    rss_loss = rss_mib() - rss0

    model = build_model({"model": S})
    net = YOLOXWithLoss(model, YOLOXLoss(80))
    net.set_train(True)
    opt = nn.SGD(model.trainable_params(), learning_rate=1e-4, momentum=0.9, nesterov=True)
    step = StepCell(net, opt)
    step.set_train(True)
    images = Tensor(rng.uniform(0, 255, (batch, 3, size, size)).astype(np.float32))
    lab = Tensor(labels)
    t_step = timed(lambda: step(images, lab, use_l1).asnumpy(), max(1, args.repeat - 1))

    print(f"yolox-s {size}x{size} batch {batch} max_labels {args.max_labels} "
          f"({args.gts} boxes/image), {n_anchors} anchors, CPU GRAPH_MODE")
    print(f"loss forward+backward: {t_loss * 1000:.1f} ms, peak memory added {rss_loss:.0f} MiB")
    print(f"full train step (forward+loss+backward+SGD): {t_step * 1000:.1f} ms")
    print(f"loss share of the train step: {100.0 * t_loss / t_step:.1f} %")


if __name__ == "__main__":
    main()
