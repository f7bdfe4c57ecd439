"""Print a recipe fully resolved (bases merged, overrides applied, validated) as YAML.

    python tools/print_config.py --config configs/yolox-s.yaml train.max_epoch=10
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install

from mindyolox.config import load_config  # noqa: E402
from mindyolox.utils.cli import add_config_args, parse_args, run_cli  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, example="train.batch_size=16")
    args = parse_args(parser, argv)
    sys.stdout.write(load_config(args.config, args.overrides).to_yaml())


if __name__ == "__main__":
    run_cli(main)
