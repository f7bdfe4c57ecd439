"""Regenerate the analysis pictures of docs/evaluation.md ("Reading the analysis") from a real run.

    python tools/make_doc_images.py                 # official nano on coco128 at 416 (../shared)
    python tools/make_doc_images.py --shared /data/shared --keep runs/doc_analysis

Runs ``test.py`` (the official YOLOX-Nano weights, ``../shared/weights/yolox_nano.pth``, on
coco128, conf 0.01, the default analysis at conf 0.25 / IoU 0.45) into a temporary folder (or
``--keep``), then copies ``pr_curve.png``, ``f1_curve.png``, ``p_curve.png``, ``r_curve.png``,
``confusion_matrix.png`` and the worst image to ``docs/img/analysis/``, each made small for
the site: at most ``--max-width`` px wide (INTER_AREA) and its colours posterised to steps of
16 so the PNG compresses to about 100 KB or less. The run compiles the nano graph once (about
a minute on CPU).
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

OUT = ROOT / "docs" / "img" / "analysis"
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="the reference data folder")
    ap.add_argument("--keep", help="write the analysis folder here (default: a temporary folder)")
    ap.add_argument("--max-width", type=int, default=800)
    args = ap.parse_args(argv)
    shared = Path(args.shared)
    data = shared / "data" / "coco128"
    from mindyolox.commands.evaluate import main as test_main
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.keep or tmp)
        rc = test_main(["--config", str(ROOT / "configs" / "yolox-nano.yaml"),
                        "--weights", str(shared / "weights" / "yolox_nano.pth"), "--img-size", "416",
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


if __name__ == "__main__":
    run_cli(main)
