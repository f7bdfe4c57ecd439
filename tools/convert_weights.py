"""Convert official YOLOX weights (.pth/.pt, or .npz of official names) to a mindyolox .ckpt.

    python tools/convert_weights.py yolox_s.pth --config configs/yolox-s.yaml -o yolox_s.ckpt

Builds the model of the recipe, loads the weights strictly (every tensor must fit; no
PyTorch needed), writes a MindSpore checkpoint (BN running stats included) and prints the
load summary. Dotted overrides such as ``model.num_classes=20`` apply to the recipe.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install

from mindyolox.config import load_config  # noqa: E402
from mindyolox.errors import WeightsError  # noqa: E402
from mindyolox.convert.download import resolve_weights  # noqa: E402
from mindyolox.utils.cli import add_config_args, parse_args, run_cli  # noqa: E402


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

    from mindyolox.convert.weights import load_weights, save_checkpoint
    from mindyolox.models import build_model
    model = build_model(cfg)
    report = load_weights(model, args.weights, strict=True)
    save_checkpoint(model, args.output)
    print(f"{report.summary()}; wrote {args.output}")


if __name__ == "__main__":
    run_cli(main)
