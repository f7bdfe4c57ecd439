"""Convert official YOLOX weights (.pth/.pt, or .npz of official names) to a mindyolox .ckpt.

    mindyolox-tools convert-weights yolox_s.pth --config yolox-s -o yolox_s.ckpt

Builds the model of the recipe, loads the weights strictly (every tensor must fit; no
PyTorch needed), writes a MindSpore checkpoint (BN running stats included) and prints the
load summary. Dotted overrides such as ``model.num_classes=20`` apply to the recipe.
"""
import argparse
from pathlib import Path

from ...config import load_config
from ...errors import WeightsError
from ...convert.download import resolve_weights
from .._args import add_config_args, parse_args, run_cli


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="official weights: .pth/.pt (torch.save) or .npz")
    parser.add_argument("-o", "--output", required=True, help="MindSpore checkpoint to write (.ckpt)")
    add_config_args(parser, example="model.num_classes=20")
    args = parse_args(parser, argv)
    args.weights = resolve_weights(args.weights)
    if Path(args.output).suffix.lower() != ".ckpt":
        raise WeightsError(f"{args.output}: output must end in .ckpt")
    cfg = load_config(args.config, args.overrides)

    from ...convert.weights import load_weights, save_checkpoint
    from ...models import build_model
    model = build_model(cfg)
    report = load_weights(model, args.weights, strict=True)
    save_checkpoint(model, args.output)
    print(f"{report.summary()}; wrote {args.output}")


def run():
    """Console entry point (``mindyolox-tools convert-weights``, ``python -m mindyolox.commands.tools.convert_weights``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
