"""Build the compiled CPU kernel library ahead of time (a container image, a cluster's home).

    mindyolox-tools build-kernels              # this CPU's flag set (-march=native)
    mindyolox-tools build-kernels --portable   # no -march: runs on every CPU of the architecture

The library goes to ``$MINDYOLOX_KERNEL_DIR`` (default ``~/.cache/mindyolox/kernels``); a run
loads the portable one when ``MINDYOLOX_KERNEL_FLAGS=portable`` is set
(:mod:`mindyolox.ops.cpu_kernels`).
"""
import argparse

from ...ops import cpu_kernels
from .._args import parse_args, run_cli


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portable", action="store_true",
                        help="portable flag set (no -march=native); default: $MINDYOLOX_KERNEL_FLAGS, else native")
    args = parse_args(parser, argv)
    path, built = cpu_kernels.build(portable=True if args.portable else None)
    print(f"{'built' if built else 'up to date'}: {path} ({cpu_kernels.flag_set(True if args.portable else None)})")


def run():
    """Console entry point (``mindyolox-tools build-kernels``, ``python -m mindyolox.commands.tools build-kernels``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
