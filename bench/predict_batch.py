"""Prediction speed per image at ``--batch 1`` vs ``--batch 8``: YOLOX-Nano (official COCO
weights) on the 80 coco_tiny val2017 images, the Cell as ``predict.py`` builds it.

    flock /tmp/mindyolox-heavy.lock python -m bench.predict_batch                 # 416, batches 1 and 8
    flock /tmp/mindyolox-heavy.lock python -m bench.predict_batch --size 320 --batches 1 4 8 --repeats 5

Two figures per batch size, each from its own :class:`~mindyolox.predict.predictor.Predictor`
(one compiled graph per batch size; the first call, with the compile, is timed apart):

- ``predict_batch``: the images already decoded in memory; letterbox + graph calls + NMS +
  box mapping, ``--repeats`` passes over all the images (:func:`bench.harness.timed`), median
  pass / number of images = ms per image. The batch sizes alternate pass by pass, so a slower
  minute on the shared machine hits them alike.
- ``end to end``: one :func:`mindyolox.predict.loop.run_plan` over the folder with drawn images,
  JSON and the summary written to a temporary folder (reader and writer threads included),
  wall seconds / images.

Prints a Markdown table with the CPU model and the load, writes ``--json`` records.
"""
import argparse
import sys
import tempfile

from bench import harness

ROOT, SHARED = harness.ROOT, harness.SHARED


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=416, help="input size (default 416, nano's test size)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per batch size (default 3)")
    parser.add_argument("--json", help="also write the records here")
    args = parser.parse_args(argv)

    import mindspore as ms
    from mindyolox.config import load_config
    from mindyolox.predict.loop import plan_source, run_plan
    from mindyolox.predict.predictor import COCO_CLASSES, Predictor
    from mindyolox.predict.source import list_source, read_image
    from mindyolox.runtime.context import build_and_load, setup_mindspore
    cfg = load_config(ROOT / "configs" / "yolox-nano.yaml")
    setup_mindspore("CPU", cfg)
    net, _ = build_and_load(cfg, str(SHARED / "weights" / "yolox_nano.pth"))
    folder = SHARED / "data" / "coco_tiny" / "val2017"
    _, files, _ = list_source(folder)
    images = [read_image(p) for p in files]
    size = (args.size, args.size)
    predictors = {b: Predictor(lambda x: net(ms.Tensor(x)), size, batch=b) for b in args.batches}
    first = {}
    for b, p in predictors.items():   # the compile of each batch size's graph, timed apart
        first[b], _ = harness.once(lambda p=p, b=b: p.predict_batch(images[:b]))
    passes = {b: [] for b in args.batches}
    for _ in range(args.repeats):
        for b, p in predictors.items():
            t = harness.timed(lambda p=p: p.predict_batch(images), 1, warmup=0, first=False)
            passes[b].extend(t.times_s)
    records, rows = [], []
    for b, p in predictors.items():
        with tempfile.TemporaryDirectory() as tmp:
            plan = plan_source(str(folder), tmp)
            wall, out = harness.once(lambda p=p, b=b: run_plan(p.predict_batch, plan, COCO_CLASSES, batch=b,
                                                               progress=False, log=lambda *a: None))
        t = harness.Timing(first[b], passes[b], None)
        n = len(images)
        rows.append((b, 1e3 * t.median_s / n, 1e3 * t.min_s / n, 1e3 * wall / n, n / wall, first[b]))
        records.append(harness.record(f"predict:nano:{args.size}:{b} coco_tiny", t, images=n,
                                      end_to_end_s=wall, detections=sum(len(v) for v in out["results"].values())))
    print(f"\nYOLOX-Nano predict, coco_tiny val2017 ({len(images)} images) at {args.size}; "
          f"{harness.cpu_line()}, {harness.load_info()}\n")
    print("| batch | predict_batch ms/img (median) | best ms/img | end to end ms/img | images/s | first call s |")
    print("|---|---|---|---|---|---|")
    for b, med, best, e2e, ips, fs in rows:
        print(f"| {b} | {med:.1f} | {best:.1f} | {e2e:.1f} | {ips:.1f} | {fs:.1f} |")
    if args.json:
        harness.write_json(args.json, records)
    return 0


if __name__ == "__main__":
    sys.exit(harness.main(main))
