"""Benchmark the YOLOX loss (SimOTA + terms) against a full training step, GRAPH_MODE.

Prints, for yolox-s at ``--size`` (640), batch ``--batch`` (8), ``--max-labels`` (120):
* the loss forward+backward time (d total / d head outputs, the part of a training step
  the loss owns) and the peak resident memory it adds (growth of the case process's VmHWM,
  :func:`bench.harness.peak_rss_mb`, MiB; measured before anything else is compiled, so it is
  the loss alone);
* the full training step time (model forward, loss, backward, SGD update) and the share
  of that step the loss takes.

    python -m bench.bench_loss [--size 640] [--batch 8] [--max-labels 120] [--gts 40]

Both measurements are one case (:func:`loss_and_step`) in its own process.
"""
import argparse
import sys

from bench import harness

S = {"backbone": "cspdarknet", "depth": 0.33, "width": 0.50, "depthwise": False}


def make_labels(batch, max_labels, n_gts, size, seed=0):
    """[B, max_labels, 5] (class, cx, cy, w, h) px: ``n_gts`` random boxes per image."""
    import numpy as np
    rng = np.random.RandomState(seed)
    labels = np.zeros((batch, max_labels, 5), np.float32)
    for b in range(batch):
        wh = np.exp(rng.uniform(np.log(6), np.log(size * 0.6), (n_gts, 2)))
        xy = rng.uniform(0, size, (n_gts, 2))
        labels[b, :n_gts] = np.concatenate([rng.randint(0, 80, (n_gts, 1)), xy, wh], 1)
    return labels


def grid(size, strides=(8, 16, 32)):
    """Anchor grid [A, 2] (x, y cells) and strides [A] of a ``size`` input, row-major per level."""
    import numpy as np
    grids, out = [], []
    for s in strides:
        n = size // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], 1))
        out.append(np.full(n * n, s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(out).astype(np.float32)


def _step_cell(net, optimizer):
    """Forward + loss + backward + SGD update in one compiled graph."""
    import mindspore as ms
    from mindspore import nn

    class StepCell(nn.Cell):
        def __init__(self):
            super().__init__()
            self.net = net
            self.optimizer = optimizer
            self.grad_fn = ms.value_and_grad(net, None, optimizer.parameters, has_aux=True)

        def construct(self, images, labels, use_l1):
            vals, grads = self.grad_fn(images, labels, use_l1)
            self.optimizer(grads)
            return vals[0]
    return StepCell()


def loss_and_step(size, batch, max_labels, gts, repeat):
    """Case: the loss forward+backward (median of ``repeat`` calls after the compile call, and
    the VmHWM growth it causes) and the full train step (median of ``repeat - 1``). Returns a
    :func:`bench.harness.record` of the loss, ``extra``: ``loss_rss_mb``, the step's timing."""
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor, nn

    from mindyolox import build_model
    from mindyolox.losses import YOLOXLoss, YOLOXWithLoss
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    grids, strides = grid(size)
    n_anchors = len(strides)
    rng = np.random.RandomState(1)
    raw = np.concatenate([rng.normal(0, 0.5, (batch, n_anchors, 4)),
                          rng.normal(-4, 1.5, (batch, n_anchors, 81))], 2).astype(np.float32)
    labels = make_labels(batch, max_labels, gts, size)
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
    rss0 = harness.peak_rss_mb()
    t_loss = harness.timed(lambda: loss_grad(*inputs)[1].asnumpy(), repeat, warmup=0)
    rss_loss = harness.peak_rss_mb() - rss0

    model = build_model({"model": S})
    net = YOLOXWithLoss(model, YOLOXLoss(80))
    net.set_train(True)
    opt = nn.SGD(model.trainable_params(), learning_rate=1e-4, momentum=0.9, nesterov=True)
    step = _step_cell(net, opt)
    step.set_train(True)
    images = Tensor(rng.uniform(0, 255, (batch, 3, size, size)).astype(np.float32))
    lab = Tensor(labels)
    t_step = harness.timed(lambda: step(images, lab, use_l1).asnumpy(), max(1, repeat - 1), warmup=0)
    return harness.record(f"loss:s:{size}:{batch}", t_loss, anchors=n_anchors, loss_rss_mb=rss_loss,
                          step_median_s=t_step.median_s, step_first_s=t_step.first_s, step_times_s=t_step.times_s)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-labels", type=int, default=120)
    ap.add_argument("--gts", type=int, default=40, help="real boxes per image")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also write the record here")
    args = ap.parse_args(argv)
    try:
        r = harness.run_case("bench_loss", "loss_and_step", dict(size=args.size, batch=args.batch,
                                                                max_labels=args.max_labels, gts=args.gts,
                                                                repeat=args.repeat))
    except harness.CaseError as e:
        print(f"error: {e.detail()}", file=sys.stderr)
        return 1
    t_loss, t_step = r["median_s"], r["extra"]["step_median_s"]
    print(f"yolox-s {args.size}x{args.size} batch {args.batch} max_labels {args.max_labels} "
          f"({args.gts} boxes/image), {r['extra']['anchors']} anchors, CPU GRAPH_MODE")
    print(f"loss forward+backward: {t_loss * 1000:.1f} ms, peak memory added {r['extra']['loss_rss_mb']:.0f} MiB")
    print(f"full train step (forward+loss+backward+SGD): {t_step * 1000:.1f} ms")
    print(f"loss share of the train step: {100.0 * t_loss / t_step:.1f} %")
    if args.json:
        harness.write_json(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(harness.main(main))
