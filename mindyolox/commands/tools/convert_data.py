"""Convert a detection dataset between COCO JSON, Pascal VOC and the YOLO txt layout.

    mindyolox-tools convert --from coco --to yolo datasets/coco128/annotations/instances_train2017.json out/coco128_yolo
    mindyolox-tools convert --from yolo --to coco out/coco128_yolo/data.yaml out/coco128_back
    mindyolox-tools convert --from voc --to coco VOCdevkit/VOC2007 out/voc_coco --split trainval --split test

SRC: ``coco`` an instances JSON (its images: ``--image-dir``, default ``<root>/<split>/`` of
COCO's layout); ``voc`` the folder holding ``Annotations/``; ``yolo`` a dataset YAML, a folder
holding one, or a folder with ``images/<split>/`` (class names from ``classes.txt`` or
``--classes``). DST must not exist or be empty (``--exist-ok``) and must not overlap SRC.
What the target format cannot carry (crowd boxes, segmentation masks, difficult flags, ...)
is counted in one summary line.
"""
import argparse
import sys

from ...data.convert import FORMATS, convert, summary_line
from ...data.writers import IMAGE_MODES
from .._args import run_cli

MAX_PROBLEMS = 20


def add_source_args(parser, dst_help):
    """The options ``convert`` and ``split`` share: SRC, DST and how SRC is read and DST written."""
    parser.add_argument("src", metavar="SRC", help="COCO: an instances JSON; VOC: the folder holding Annotations/; "
                                                   "YOLO: a dataset YAML or its folder")
    parser.add_argument("dst", metavar="DST", help=dst_help)
    parser.add_argument("--image-dir", metavar="DIR",
                        help="COCO source: the folder of its images (default <root>/<split>/ of COCO's layout)")
    parser.add_argument("--split", action="append", metavar="NAME",
                        help="read only this split (VOC list, YOLO train/val/test; COCO: the split's name); repeatable")
    parser.add_argument("--classes", nargs="+", metavar="NAME",
                        help="class names in order (VOC: default the names found, sorted; YOLO without a YAML)")
    parser.add_argument("--images", choices=IMAGE_MODES, default="link",
                        help="how images get into DST: symbolic link (default), hard link, or copy")
    parser.add_argument("--exist-ok", action="store_true", help="write into an existing non-empty DST")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def print_problems(problems, out=sys.stderr):
    """The reader's one-line notes (the first :data:`MAX_PROBLEMS`, then how many more)."""
    for p in problems[:MAX_PROBLEMS]:
        print(f"warning: {p}", file=out)
    if len(problems) > MAX_PROBLEMS:
        print(f"warning: ... and {len(problems) - MAX_PROBLEMS} more problem(s)", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="src_format", required=True, choices=FORMATS, help="format of SRC")
    parser.add_argument("--to", dest="dst_format", required=True, choices=FORMATS, help="format to write")
    add_source_args(parser, "folder to write (new or empty)")
    args = parser.parse_args(argv)
    result = convert(args.src_format, args.src, args.dst_format, args.dst, image_dir=args.image_dir,
                     splits=args.split, classes=args.classes, images=args.images, exist_ok=args.exist_ok,
                     progress=not args.no_progress and sys.stderr.isatty())
    print_problems(result["problems"])
    print(summary_line(result))


def run():
    """Console entry point (``mindyolox-tools convert``, ``python -m mindyolox.commands.tools.convert_data``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
