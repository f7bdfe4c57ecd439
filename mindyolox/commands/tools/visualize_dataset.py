"""Draw augmented training samples (what the model is fed) with their boxes and class names.

    mindyolox-tools visualize-dataset --config yolox-s --n 8 -o samples.png
    mindyolox-tools visualize-dataset --config yolox-s --no-aug data.data_dir=../shared/data/coco16

Samples are built exactly as the training loader builds them (Mosaic, affine, MixUp, HSV,
flip at the recipe's input size, seed ``train.seed``), but in-process, one by one.
"""
import argparse
import logging

from ...config import load_config
from ...data.samples import render_samples
from .._args import add_config_args, parse_args, run_cli
from ...utils.visualize import make_grid, save_image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, example="aug.mosaic_prob=0")
    parser.add_argument("--n", type=int, default=8, help="number of samples (default 8)")
    parser.add_argument("-o", "--output", default="samples.png", help="PNG to write")
    parser.add_argument("--cols", type=int, default=4, help="grid columns")
    parser.add_argument("--no-aug", action="store_true", help="samples of the no-aug epochs (no mosaic/mixup)")
    parser.add_argument("--split", choices=["train", "val"], default="train")
    args = parse_args(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    cfg = load_config(args.config, args.overrides)
    images, dataset = render_samples(cfg["data"], cfg["aug"], cfg["train"]["seed"], args.n,
                                     mosaic=not args.no_aug, split=args.split)
    save_image(args.output, make_grid(images, args.cols))
    s = dataset.events.summary()
    print(f"wrote {args.output}: {len(images)} samples of {dataset} at "
          f"{cfg['data']['input_size'][0]}x{cfg['data']['input_size'][1]} "
          f"(skipped images: {s['bad_images']}, labels dropped for max_labels: {s['dropped_labels']})")


def run():
    """Console entry point (``mindyolox-tools visualize-dataset``, ``python -m mindyolox.commands.tools.visualize_dataset``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
