"""Evaluation speed: YOLOX-s forward at 640 batch 1, and YOLOX-Nano end to end on coco_tiny val.

    python bench/bench_eval.py                         # both, GRAPH_MODE on CPU
    python bench/bench_eval.py --runs 20 --skip-nano
    python bench/bench_eval.py --s-weights yolox_s.ckpt --batch 1

1. YOLOX-s eval forward (decoded outputs) at 640x640, batch 1: median, best and mean ms/img
   over ``--runs`` calls after ``--warmup`` calls (graph compilation excluded). On a shared
   machine the best run is the figure least disturbed by other processes (load is printed).
   Weights do not change the speed; random initialisation is used unless ``--s-weights``.
   For the ratio to the official model run ``bench/compare.py --anchor-python ...``.
2. YOLOX-Nano (official COCO weights) over coco_tiny val2017 at 416, batch ``--batch``,
   conf 0.01, NMS 0.65: images/s end to end (loading, letterbox, forward, NMS, box mapping;
   first batch with compilation excluded), forward and NMS ms/img, and the COCO AP found.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mindyolox.commands._args import run_cli  # noqa: E402

SHARED = Path(os.environ.get("MINDYOLOX_SHARED", ROOT.parent / "shared"))


def bench_s_forward(weights, runs, warmup):
    import mindspore as ms
    from mindyolox import build_model, load_config, load_weights
    from mindyolox.data import preproc
    import cv2
    model = build_model(load_config(ROOT / "configs" / "yolox-s.yaml"))
    if weights:
        load_weights(model, weights)
    model.set_train(False)
    x, _ = preproc(cv2.imread(str(SHARED / "data" / "images" / "dog.jpg")), (640, 640))
    x = ms.Tensor(x[None])
    t0 = time.perf_counter()
    model(x).asnumpy()
    compile_s = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        model(x).asnumpy()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(x).asnumpy()
        times.append(1000 * (time.perf_counter() - t0))
    med, best = statistics.median(times), min(times)
    print(f"yolox-s forward 640x640 batch 1: median {med:.1f} ms/img, best {best:.1f}, mean "
          f"{np.mean(times):.1f} over {runs} runs (first call incl. compilation {compile_s:.1f} s; load "
          f"average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); no ratio measured here: "
          f"bench/compare.py runs the official model side by side")
    return med


def bench_nano_eval(batch, workers):
    from mindyolox import build_model, load_config, load_weights
    from mindyolox.data import COCODataset
    from mindyolox.evaluation import evaluate, format_timing
    root = SHARED / "data" / "coco_tiny"
    ds = COCODataset(root / "annotations" / "instances_val2017.json", root / "val2017")
    model = build_model(load_config(ROOT / "configs" / "yolox-nano.yaml"))
    load_weights(model, SHARED / "weights" / "yolox_nano.pth")
    t0 = time.perf_counter()
    r = evaluate(model, ds, img_size=(416, 416), batch_size=batch, conf=0.01, nms=0.65,
                 num_workers=workers, progress=True)
    total = time.perf_counter() - t0
    print(f"yolox-nano coco_tiny val 416 batch {batch}: {format_timing(r['timing'])}")
    print(f"  whole evaluate() incl. compilation and COCOeval: {total:.1f} s; "
          f"AP50:95 {100 * r['AP50_95']:.2f} AP50 {100 * r['AP50']:.2f} (official 30.52 / 47.77)")
    return r["timing"]["images_per_s"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed yolox-s calls (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first, incl. compile")
    parser.add_argument("--s-weights", help="optional weights for yolox-s (speed does not depend on them)")
    parser.add_argument("--batch", type=int, default=8, help="nano eval batch (default 8)")
    parser.add_argument("--workers", type=int, default=0, help="nano eval loader workers (default 0)")
    parser.add_argument("--skip-s", action="store_true")
    parser.add_argument("--skip-nano", action="store_true")
    args = parser.parse_args(argv)
    import mindspore as ms
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    if not args.skip_s:
        bench_s_forward(args.s_weights, args.runs, args.warmup)
    if not args.skip_nano:
        bench_nano_eval(args.batch, args.workers)
    return 0


if __name__ == "__main__":
    run_cli(main)
