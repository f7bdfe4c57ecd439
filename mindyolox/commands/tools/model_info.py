"""Print a recipe's model size: parameter count and GFLOPs (as official YOLOX reports them).

    mindyolox-tools model-info --config yolox-s
    mindyolox-tools model-info --config yolox-nano --img-size 640
    mindyolox-tools model-info --config yolox-s --img-size 384 640 model.num_classes=20

--img-size is one int (square) or ``h w``; it defaults to the recipe's ``data.test_size``.
GFLOPs = 2 x thop-style operations (conv MACs, BatchNorm, upsampling), see
mindyolox/models/info.py. Runs on CPU, no graph compilation.
"""
import argparse
from pathlib import Path

from ...config import load_config
from ...errors import MindYOLOXError
from .._args import add_config_args, parse_args, run_cli


def format_info(name, params, gflops, size):
    """``yolox-s: params 8,968,255 (8.97 M), GFLOPs 26.93 @ 640x640``."""
    return f"{name}: params {params:,} ({params / 1e6:.2f} M), GFLOPs {gflops:.2f} @ {size[0]}x{size[1]}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, example="model.num_classes=20")
    parser.add_argument("--img-size", nargs="+", metavar="N",
                        help="input size: one int (square) or h w; default: the recipe's data.test_size")
    args = parse_args(parser, argv)
    img_size = args.img_size
    if img_size is not None:
        try:
            img_size = [int(v) for v in img_size]
        except ValueError:
            raise MindYOLOXError(f"--img-size: expected one int or two ints (h w), got "
                                 f"{' '.join(img_size) or 'nothing'}") from None
    cfg = load_config(args.config, args.overrides)

    import mindspore as ms
    from ...models import build_model
    from ...models.info import count_flops, count_params, parse_img_size

    try:
        size = parse_img_size(img_size if img_size is not None else cfg.data.test_size)
    except ValueError as e:
        source = "--img-size" if img_size is not None else f"{args.config}: data.test_size"
        raise MindYOLOXError(f"{source}: {e}") from None

    ms.set_device("CPU")  # counting needs no accelerator
    model = build_model(cfg)
    print(format_info(Path(args.config).stem, count_params(model), count_flops(model, size), size))


def run():
    """Console entry point (``mindyolox-tools model-info``, ``python -m mindyolox.commands.tools.model_info``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
