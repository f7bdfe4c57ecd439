"""Peak memory of one training process reading every image of a dataset once, without a
cache, with ``data.cache=ram`` and with ``data.cache=disk`` (the file built beforehand, as by
another rank of the machine), for coco128 listed 1x and 10x (same image files, other ids):

    python -m bench.bench_cache --copies 1 10 --size 640

Each measurement is its own process (:func:`read_every_image`, a case run by
:func:`bench.harness.run_case`; peak RSS is its VmHWM, :func:`bench.harness.peak_rss_mb`;
MindSpore's import is most of the baseline). Prints one row per (copies, mode): peak RSS,
its growth over the import, wall time, and the disk cache's file size.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench import harness

COCO128 = harness.SHARED / "data" / "coco128"


def read_every_image(ann, images, mode, size, folder):
    """Case: load COCO ``ann`` / ``images``, cache its images (``data.cache=mode``: ram, disk or
    None) at ``size`` [h, w] in ``folder``, then read every image once through the training
    sample builder (mosaic and mixup off). Returns ``{"before_mb", "peak_mb", "s"}``: VmHWM
    with the dataset loaded, at the end, and the seconds taken."""
    import numpy as np

    from mindyolox.data import COCODataset
    from mindyolox.data.mosaic import MosaicMixup
    size = tuple(size)
    ds = COCODataset(ann, images)
    aug = dict(mosaic_prob=0.0, mixup_prob=0.0, hsv_prob=1.0, flip_prob=0.5, degrees=10.0, translate=0.1,
               mosaic_scale=[0.1, 2.0], enable_mixup=False, mixup_scale=[0.5, 1.5], shear=2.0)

    def cache_and_read():
        if mode:
            ds.cache_images(size, mode, folder)
        builder = MosaicMixup(ds, size, aug, 50)
        rng = np.random.default_rng(0)
        for i in range(len(ds)):  # every image read once
            builder.sample(i, size, rng)
    before = harness.peak_rss_mb()
    seconds, _ = harness.once(cache_and_read)
    return {"before_mb": before, "peak_mb": harness.peak_rss_mb(), "s": seconds}


def coco128_copies(out_dir, n):
    """A COCO JSON listing coco128's images ``n`` times (other ids; the same files through
    ``n`` symlinks ``<out_dir>/images/c<k>`` to coco128's image folder, since one path under
    two ids is refused: :mod:`mindyolox.data.coco`). Its image folder is ``<out_dir>/images``."""
    src = json.loads((COCO128 / "annotations" / "instances_train2017.json").read_text())
    images, anns = [], []
    (Path(out_dir) / "images").mkdir(parents=True, exist_ok=True)
    for c in range(n):
        link = Path(out_dir) / "images" / f"c{c}"
        if not link.is_symlink():
            link.symlink_to((COCO128 / "train2017").resolve(), target_is_directory=True)
        images += [dict(im, id=im["id"] + c * 10**7, file_name=f"c{c}/{im['file_name']}") for im in src["images"]]
        anns += [dict(a, id=a["id"] + c * 10**8, image_id=a["image_id"] + c * 10**7) for a in src["annotations"]]
    path = Path(out_dir) / f"coco128x{n}.json"
    path.write_text(json.dumps(dict(src, images=images, annotations=anns)))
    return path


def peak_rss(ann, mode, size, folder):
    """``{"before_mb", "peak_mb", "s"}`` of a fresh process reading every image of ``ann``
    (:func:`coco128_copies`' image folder) once with ``data.cache=mode`` (None: no cache):
    :func:`read_every_image` run by :func:`bench.harness.run_case`."""
    try:
        r = harness.run_case("bench_cache", "read_every_image", dict(
            ann=str(ann), images=str(Path(ann).parent / "images"), mode=mode, size=list(size), folder=str(folder)),
            timeout=3600)
    except harness.CaseError as e:
        raise RuntimeError(e.detail()) from None
    return {k: r[k] for k in ("before_mb", "peak_mb", "s")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--copies", type=int, nargs="+", default=[1, 10])
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--work", default=None, help="folder for the JSONs and the cache (default: a temp folder)")
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="mindyolox_bench_cache_"))
    work.mkdir(parents=True, exist_ok=True)
    size = (args.size, args.size)
    print("| coco128 x | images | mode | peak RSS MB | growth while reading MB | s | cache file GB |")
    print("|---|---|---|---|---|---|---|")
    for n in args.copies:
        ann = coco128_copies(work, n)
        peak_rss(ann, "disk", size, work / "cache")  # build it first: the reader below is "another rank"
        for mode in (None, "ram", "disk"):
            r = peak_rss(ann, mode, size, work / "cache")
            files = sum(f.stat().st_size for f in (work / "cache").glob(f"coco128x{n}_*.u8"))
            print(f"| {n} | {128 * n} | {mode or 'none'} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['before_mb']:.0f} "
                  f"| {r['s']:.1f} | {files / 1e9 if mode == 'disk' else 0:.2f} |", flush=True)


if __name__ == "__main__":
    sys.exit(harness.main(main))
