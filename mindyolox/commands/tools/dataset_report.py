"""A dataset's statistics as text, one PNG and a JSON.

    mindyolox-tools dataset-report datasets/coco128/annotations/instances_train2017.json --format coco -o report
    mindyolox-tools dataset-report datasets/my_yolo/data.yaml -o report
    mindyolox-tools dataset-report VOCdevkit/VOC2007 --format voc --split trainval

Images, boxes, boxes per image, the class histogram, box sizes (COCO small / medium / large
by box area, and a width/height scatter), images without boxes, duplicate images (same
bytes), labels outside the image, images missing on disk. SRC as ``mindyolox-tools convert``
reads it; several splits are reported together (their sizes listed; an image in two splits
counted once, and named). Writes ``<dir>/dataset_report.png`` and ``.json`` (``-o``, default
``dataset_report``); ``--no-hash`` skips the duplicate search (it reads the files).
"""
import argparse
import os

from ...data.convert import FORMATS, merge_splits, read_source
from ...data.report import dataset_stats, report_text, write_report
from .._args import run_cli
from .convert_data import print_problems


def _guess_format(src):
    if src.endswith(".json"):
        return "coco"
    if src.endswith((".yaml", ".yml")):
        return "yolo"
    if os.path.isdir(os.path.join(src, "Annotations")):
        return "voc"
    return "yolo"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", metavar="SRC", help="COCO: an instances JSON; VOC: the folder holding Annotations/; "
                                                   "YOLO: a dataset YAML or its folder")
    parser.add_argument("--format", choices=FORMATS,
                        help="format of SRC (default: coco for a .json, yolo for a .yaml, voc for a folder with "
                             "Annotations/, else yolo)")
    parser.add_argument("--image-dir", metavar="DIR", help="COCO: the folder of its images")
    parser.add_argument("--split", action="append", metavar="NAME", help="report only this split; repeatable")
    parser.add_argument("--classes", nargs="+", metavar="NAME", help="class names (as for convert)")
    parser.add_argument("-o", "--output", default="dataset_report", metavar="DIR",
                        help="folder for dataset_report.png and .json (default dataset_report)")
    parser.add_argument("--name", help="the dataset's name in the report (default: SRC's)")
    parser.add_argument("--no-hash", action="store_true", help="do not look for duplicate images")
    args = parser.parse_args(argv)
    fmt = args.format or _guess_format(args.src)
    data, problems = read_source(fmt, args.src, args.image_dir, args.split, args.classes)
    print_problems(problems)
    sizes = {sp.name: len(sp.coco["images"]) for sp in data}
    whole = data[0] if len(data) == 1 else merge_splits(data)
    name = args.name or os.path.basename(os.path.normpath(args.src))
    stats = dataset_stats(whole, name=name, hash_images=not args.no_hash, split_sizes=sizes)
    stats["label_problems"] = len(problems)
    print(report_text(stats))
    js, png = write_report(stats, args.output)
    print(f"wrote {png} and {js}")


def run():
    """Console entry point (``mindyolox-tools dataset-report``, ``python -m mindyolox.commands.tools.dataset_report``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
