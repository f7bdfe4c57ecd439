"""Regenerate every picture of the documentation from real runs of the project's own commands.

    python tools/make_doc_images.py                      # all of them (about 5 minutes on a 2-core CPU)
    python tools/make_doc_images.py --only bench predict # some of them
    python tools/make_doc_images.py --shared /data/shared --keep runs/doc_images

Each part writes PNGs under ``docs/img/``, each made small for the site by ``small_png``: at
most ``--max-width`` px wide (INTER_AREA) and its colours posterised to steps of 16 so the PNG
compresses to about 100 KB or less.

- ``analysis``: ``test.py`` with the official YOLOX-Nano weights
  (``../shared/weights/yolox_nano.pth``) on coco128 at 416, conf 0.01, the default analysis at
  conf 0.25 / IoU 0.45; ``pr_curve.png``, ``f1_curve.png``, ``p_curve.png``, ``r_curve.png``,
  ``confusion_matrix.png`` and the worst image -> ``docs/img/analysis/`` (one nano compile,
  about a minute).
- ``predict``: ``predict.py`` with the same weights on ``../shared/data/images/dog.jpg`` (the
  official demo photo) -> ``docs/img/predict_dog.png``.
- ``samples``: ``mindyolox-tools visualize-dataset`` of the demo recipe (8 augmented training
  samples, Mosaic on) -> ``docs/img/demo_samples.png``.
- ``report``: ``mindyolox-tools dataset-report`` of coco128's train split ->
  ``docs/img/dataset_report_coco128.png``.
- ``bench``: the ratios of the table "Side by side with the official code" of
  ``docs/benchmarks.md`` (read from the page, so the chart follows the table) as a bar chart ->
  ``docs/img/benchmark_ratios.png``.
- ``curves``: ``train.py`` with the demo recipe cut to 2 epochs (``train.max_epoch=2
  train.no_aug_epochs=1 train.warmup_epochs=1 train.eval_interval=1``, about 2 minutes), its
  ``curves.png`` -> ``docs/img/curves_demo_2epochs.png`` (the quickstart's 10-epoch run takes 6-9
  minutes: its curves look alike, over 5x the steps).
- ``tracking``: ``tools/make_tracking_still.py`` (``docs/img/tracking.png``).

- ``tide``: ``test.py --conf 0.001`` with the same weights on coco_tiny's 80 val images at 416,
  its ``tide.png`` -> ``docs/img/tide_coco_tiny_nano.png`` (``docs/evaluation.md``).
"""
import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mindyolox.commands._args import run_cli  # noqa: E402

IMG = ROOT / "docs" / "img"
OUT = IMG / "analysis"
PARTS = ("analysis", "tide", "predict", "samples", "report", "bench", "curves", "tracking")
PICTURES = ("pr_curve.png", "f1_curve.png", "p_curve.png", "r_curve.png", "confusion_matrix.png")


def small_png(src, dst, max_width):
    """``src`` (any image) -> ``dst`` PNG: at most ``max_width`` wide, colours in steps of 16."""
    img = cv2.imread(str(src))
    if img is None:
        raise SystemExit(f"error: cannot read {src}")
    if img.shape[1] > max_width:
        s = max_width / img.shape[1]
        img = cv2.resize(img, (max_width, int(round(img.shape[0] * s))), interpolation=cv2.INTER_AREA)
    img = (np.minimum(255, (img.astype(np.int32) + 8) // 16 * 16)).astype(np.uint8)
    dst.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dst), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return dst.stat().st_size


def publish(rc, src, name, max_width):
    """After a command that exited with ``rc``: its picture ``src`` made small as
    ``docs/img/<name>`` (:func:`small_png`), its size printed; returns ``rc``."""
    if rc:
        return rc
    dst = IMG / name
    print(f"{dst}: {small_png(src, dst, max_width) // 1024} KB")
    return 0


def analysis(args, work):
    """The analysis pictures of docs/evaluation.md (module doc)."""
    from mindyolox.commands.evaluate import main as test_main
    data = args.shared / "data" / "coco128"
    run = work / "analysis"
    rc = test_main(["--config", str(ROOT / "configs" / "yolox-nano.yaml"),
                    "--weights", str(args.shared / "weights" / "yolox_nano.pth"), "--img-size", "416",
                    "--conf", "0.01", "--ann", str(data / "annotations" / "instances_train2017.json"),
                    "--images", str(data / "train2017"), "--save-dir", str(run), "--workers", "0",
                    "--no-progress"])
    if rc:
        return rc
    shutil.rmtree(OUT, ignore_errors=True)
    for name in PICTURES:
        print(f"{OUT / name}: {small_png(run / name, OUT / name, args.max_width) // 1024} KB")
    worst = sorted((run / "worst_images").glob("01_*.jpg"))
    if worst:
        print(f"{OUT / 'worst_image.png'}: {small_png(worst[0], OUT / 'worst_image.png', 700) // 1024} KB")
    return 0


def tide(args, work):
    """The TIDE chart of docs/evaluation.md (module doc)."""
    from mindyolox.commands.evaluate import main as test_main
    data = args.shared / "data" / "coco_tiny"
    run = work / "tide"
    rc = test_main(["--config", str(ROOT / "configs" / "yolox-nano.yaml"),
                    "--weights", str(args.shared / "weights" / "yolox_nano.pth"), "--conf", "0.001",
                    "--ann", str(data / "annotations" / "instances_val2017.json"), "--images", str(data / "val2017"),
                    "--save-dir", str(run), "--workers", "0", "--no-progress"])
    return publish(rc, run / 'tide.png', "tide_coco_tiny_nano.png", args.max_width)


def predict(args, work):
    """predict.py's drawing of the official demo photo."""
    from mindyolox.commands.predict import main as predict_main
    photo = args.shared / "data" / "images" / "dog.jpg"
    rc = predict_main(["--config", str(ROOT / "configs" / "yolox-nano.yaml"),
                       "--weights", str(args.shared / "weights" / "yolox_nano.pth"),
                       "--source", str(photo), "--save-dir", str(work / "predict")])
    return publish(rc, work / 'predict' / photo.name, "predict_dog.png", 520)


def samples(args, work):
    """visualize-dataset's grid of augmented demo samples (the demo data is made when missing)."""
    from mindyolox.commands.tools.visualize_dataset import main as vis_main
    out = work / "samples.png"
    rc = vis_main(["--config", "demo/yolox-nano-demo", "--n", "8", "--cols", "4", "-o", str(out)])
    return publish(rc, out, "demo_samples.png", args.max_width)


def report(args, work):
    """dataset-report's PNG of coco128's train split."""
    from mindyolox.commands.tools.dataset_report import main as report_main
    data = args.shared / "data" / "coco128"
    rc = report_main([str(data / "annotations" / "instances_train2017.json"), "--name", "coco128",
                      "-o", str(work / "report")])
    return publish(rc, work / 'report' / 'dataset_report.png', "dataset_report_coco128.png", args.max_width)


def curves(args, work):
    """curves.png of a 2-epoch demo run (module doc)."""
    from mindyolox.commands.train import main as train_main
    run = work / "curves_run"
    rc = train_main(["--config", str(ROOT / "configs" / "demo" / "yolox-nano-demo.yaml"), "--run-dir", str(run),
                     "--exist-ok", "--no-progress", "--compile-cache", "off", "train.max_epoch=2",
                     "train.no_aug_epochs=1", "train.warmup_epochs=1", "train.eval_interval=1"])
    return publish(rc, run / 'curves.png', "curves_demo_2epochs.png", args.max_width)


def tracking(args, work):
    """The tracking still (tools/make_tracking_still.py)."""
    import make_tracking_still
    make_tracking_still.main()
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="the parts to make (default all)")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="the reference data folder")
    ap.add_argument("--keep", help="write the runs here (default: a temporary folder)")
    ap.add_argument("--max-width", type=int, default=800)
    args = ap.parse_args(argv)
    args.shared = Path(args.shared)
    sys.path.insert(0, str(ROOT / "tools"))
    import doc_charts
    makers = {"analysis": analysis, "tide": tide, "predict": predict, "samples": samples, "report": report,
              "bench": lambda a, w: doc_charts.benchmark_chart(IMG / "benchmark_ratios.png", small_png),
              "curves": curves, "tracking": tracking}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        for part in args.only:
            rc = makers[part](args, work)
            if rc:
                return rc
    return 0


if __name__ == "__main__":
    run_cli(main)
