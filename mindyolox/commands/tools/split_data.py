"""Split a dataset into train / val (/ test) by ratio, stratified by class, with a seed.

    mindyolox-tools split datasets/my_yolo/data.yaml out/my_split --format yolo --ratios 0.8 0.2 --seed 0
    mindyolox-tools split annotations/instances_all.json out/my_split --format coco --image-dir images --ratios 0.7 0.2 0.1
    mindyolox-tools split VOCdevkit/VOC2007 out/voc_split --format voc --to yolo --ratios 0.8 0.2

SRC is read as ``mindyolox-tools convert`` reads it (every split it has, merged; ``--split``
to take some), cut by the rule of :mod:`mindyolox.data.split` (same seed, same split) and
written to DST as ``train``, ``val`` (and ``test`` when a third ratio is given and > 0) in
``--to`` (default: the same format). Prints the size of each split and any class missing
from a split where it has enough images (ratio x its images >= 1).
"""
import argparse
import sys

from ...data.convert import FORMATS, check_destination, merge_splits, read_source, summary_line
from ...data.split import check_ratios, missing_classes, partition
from ...data.writers import write_splits
from .._args import run_cli
from .convert_data import add_source_args, print_problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_args(parser, "folder to write the splits to (new or empty)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="format of SRC")
    parser.add_argument("--to", choices=FORMATS, help="format to write (default: --format)")
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.8, 0.2], metavar="R",
                        help="train val [test] shares adding up to 1 (default 0.8 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0): the same seed, the same split")
    args = parser.parse_args(argv)
    ratios = check_ratios(args.ratios)
    data, problems = read_source(args.format, args.src, args.image_dir, args.split, args.classes)
    check_destination(args.dst, data, args.exist_ok)
    print_problems(problems)
    whole = data[0] if len(data) == 1 else merge_splits(data)
    parts_splits, parts = partition(whole, ratios, args.seed)
    n = len(whole.coco["images"])
    print("split: " + ", ".join(f"{sp.name} {len(sp.coco['images'])} images ({100 * len(sp.coco['images']) / max(n, 1):.1f} %)"
                                for sp in parts_splits) + f" of {n}, seed {args.seed}")
    names = {c["id"]: c.get("name", c["id"]) for c in whole.coco["categories"]}
    missing = missing_classes(whole.coco, parts, ratios)
    for s, c, m in missing:
        print(f"warning: class '{names[c]}' ({m} images) is not in split {('train', 'val', 'test')[s]} "
              "(no room left, or its images are all in the other splits)", file=sys.stderr)
    result = write_splits(parts_splits, args.dst, args.to or args.format, images=args.images,
                          progress=not args.no_progress and sys.stderr.isatty())
    result.update(problems=problems, **{"from": args.format, "to": args.to or args.format})
    print(summary_line(result))


def run():
    """Console entry point (``mindyolox-tools split``, ``python -m mindyolox.commands.tools.split_data``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
