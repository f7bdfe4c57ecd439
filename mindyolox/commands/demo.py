"""Generate the mindyolox synthetic shapes demo dataset (COCO format).

    python -m mindyolox.commands.demo --out datasets/demo [--train 1500 --val 200 --seed 0]
    mindyolox-tools demo-data --out datasets/demo         # the same, installed

What is drawn and the layout written: :mod:`mindyolox.data.demo`. ``--out`` must be new or
empty. Recipes do not need this: ``data.data_dir: demo:<dir>`` generates the dataset on first
use; this makes one of any size or seed ahead of time.
"""
import argparse

from ._args import run_cli

__all__ = ["main", "run"]


def main(argv=None):
    from ..data.demo import DemoSpec, generate
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.add_argument("--train", type=int, default=DemoSpec().num_train, help="train images (default %(default)s)")
    p.add_argument("--val", type=int, default=DemoSpec().num_val, help="val images (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = p.parse_args(argv)
    generate(args.out, DemoSpec(args.train, args.val, args.seed))
    return 0


def run():
    """Console entry point (``mindyolox-tools demo-data``, ``python -m mindyolox.commands.demo``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
