"""Print a recipe fully resolved (bases merged, overrides applied, validated) as YAML.

    mindyolox-tools print-config --config yolox-s train.max_epoch=10
"""
import argparse
import sys

from ...config import load_config
from .._args import add_config_args, parse_args, run_cli


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, example="train.batch_size=16")
    args = parse_args(parser, argv)
    sys.stdout.write(load_config(args.config, args.overrides).to_yaml())


def run():
    """Console entry point (``mindyolox-tools print-config``, ``python -m mindyolox.commands.tools.print_config``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
