"""Throughput of the training data pipeline (Mosaic + MixUp + HSV + flip at 640, the
``mindspore.dataset`` loader with Python worker processes).

    python bench/bench_data.py                       # coco_tiny from ../shared, 640, 1 and 2 workers
    python bench/bench_data.py --workers 0 1 2 --batches 20 --size 640

Prints images/s and ms/image per worker count; with ``--step-ms`` (a train step's ms for
``--step-batch`` images, measured in the same sitting, e.g. by ``bench/compare.py``) also
the images/s that step needs from the pipeline.
"""
import argparse
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mindyolox.config import load_config  # noqa: E402
from mindyolox.data.loader import build_dataset, create_train_loader  # noqa: E402
from mindyolox.commands._args import run_cli  # noqa: E402

SHARED = Path(os.environ.get("MINDYOLOX_SHARED", ROOT.parent / "shared"))


def measure(cfg, dataset, workers, batches, warmup):
    """Seconds per image over ``batches`` batches after ``warmup`` batches."""
    loader = create_train_loader(cfg["data"], cfg["aug"], cfg["train"], num_workers=workers, dataset=dataset)
    epochs = loader.ms_dataset.create_tuple_iterator(num_epochs=-1, output_numpy=True)

    def endless():
        while True:
            yield from epochs  # each pass over the iterator is one more epoch

    it = endless()
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        images, _ = next(it)
        n += images.shape[0]
    dt = time.perf_counter() - t0
    return dt / n, images.shape


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "yolox-s.yaml"))
    p.add_argument("--data-dir", default=str(SHARED / "data" / "coco_tiny"))
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--step-ms", type=float, default=None,
                   help="train step time in ms at --size for --step-batch images, measured in the same sitting")
    p.add_argument("--step-batch", type=int, default=4)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.config, [
        f"data.data_dir={args.data_dir}", f"data.input_size=[{args.size},{args.size}]",
        "data.multiscale_range=0", "data.random_size=[]", f"train.batch_size={args.batch}",
        "aug.mosaic_prob=1.0", "aug.mixup_prob=1.0", "aug.enable_mixup=true"])
    dataset = build_dataset(cfg["data"], "train")
    print(f"pipeline: mosaic+mixup+hsv+flip at {args.size}, batch {args.batch}, {dataset}, "
          f"{os.cpu_count()} CPU cores")
    for w in args.workers:
        spi, shape = measure(cfg, dataset, w, args.batches, args.warmup)
        print(f"workers={w}: {1.0 / spi:7.2f} images/s  {spi * 1e3:7.1f} ms/image  (batch {tuple(shape)})")
    if args.step_ms:
        need = args.step_ms / args.step_batch
        print(f"train step at {args.size}: {args.step_ms:.0f} ms per {args.step_batch} images = "
              f"{need:.1f} ms/image = {1e3 / need:.2f} images/s needed from the pipeline")


if __name__ == "__main__":
    run_cli(main)
