"""Export a YOLOX model to MindIR (or try ONNX) for deployment.

    python deploy/export.py --config configs/yolox-s.yaml --weights yolox_s.ckpt \
        --format MINDIR --batch 1 --img-size 640
    python deploy/export.py --config configs/yolox-nano.yaml --weights ../shared/weights/yolox_nano.pth \
        --img-size 416 --output runs/export/nano416

The exported graph takes ``float32 [batch, 3, H, W]`` (BGR, 0..255, letterboxed by
``mindyolox.data.preproc``) and returns the RAW head outputs ``float32 [batch, A, 5+C]``:
``(dx, dy, log w, log h, sigmoid(obj), sigmoid(cls)...)`` (the head's
``decode_in_inference=False``, like the official ONNX export); ``deploy/infer.py`` decodes
them. The input shape comes only from ``--batch`` and ``--img-size`` (both required), never
from the recipe. Beside ``<output>.mindir`` a ``<output>.json`` records the input shape,
strides, class names and that outputs are raw, for ``deploy/infer.py``.

Convolutions are exported as standard ``Conv2D`` ops (``--conv native``, the default), which
ONNX, MindSpore Lite and Ascend/GPU run with their own kernels. ``--conv im2col`` exports the
CPU formulation mindyolox trains with (``Im2Col`` + 1x1 GEMM, see mindyolox/models/conv.py):
several times faster when the MindIR is run by MindSpore itself on a CPU, not portable.
"""
import argparse
import json
import os
from pathlib import Path

from ..engine.runtime import build_and_load, parse_img_size, setup_mindspore
from ..errors import ConfigError, MindYOLOXError
from ..convert.download import resolve_weights
from ..utils.cli import add_config_args, parse_args, run_cli

FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}


def export_model(model, batch, img_size, output, file_format="MINDIR"):
    """Export ``model`` (eval mode, ``decode_in_inference`` already chosen) for an input
    ``[batch, 3, H, W]``; ``output`` is the path without suffix. Returns the written path.
    Raises MindYOLOXError with MindSpore's first message line when the export fails."""
    import mindspore as ms
    import numpy as np
    fmt = file_format.upper()
    x = ms.Tensor(np.zeros((int(batch), 3, int(img_size[0]), int(img_size[1])), np.float32))
    os.makedirs(os.path.dirname(os.path.abspath(output)) or ".", exist_ok=True)
    try:
        if fmt == "ONNX" and hasattr(ms, "onnx"):      # ms.export(ONNX) is deprecated in 2.x
            ms.onnx.export(model, x, file_name=str(output) + ".onnx",
                           input_names=["images"], output_names=["outputs"])
        else:
            ms.export(model, x, file_name=str(output), file_format=fmt)
    except (RuntimeError, ValueError, TypeError) as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise MindYOLOXError(f"{fmt} export failed: {first}") from None
    path = str(output) + FORMATS[fmt]
    if not os.path.isfile(path):
        raise MindYOLOXError(f"{fmt} export wrote no file at {path}")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, example="model.num_classes=20")
    parser.add_argument("--weights", required=True, help=".ckpt (mindyolox), .pth (official), .npz, or an official name such as yolox_s (downloaded once)")
    parser.add_argument("--format", default="MINDIR", type=str.upper, choices=sorted(FORMATS),
                        help="MINDIR (default), ONNX or AIR (Ascend only)")
    parser.add_argument("--batch", type=int, required=True, help="batch size of the exported graph")
    parser.add_argument("--img-size", nargs="+", required=True, help="input size: S or H W")
    parser.add_argument("--output", help="output path without suffix "
                                         "(default runs/export/<recipe>_<H>x<W>_b<batch>)")
    parser.add_argument("--conv", default="native", choices=("native", "im2col"),
                        help="convolution ops in the graph: native Conv2D (portable, default) or "
                             "im2col (fast with MindSpore on CPU)")
    parser.add_argument("--device", default=None, help="CPU | GPU | Ascend (default: MindSpore's)")
    args = parse_args(parser, argv)
    args.weights = resolve_weights(args.weights)
    if args.batch <= 0:
        raise ConfigError(f"--batch must be positive, got {args.batch}")
    img_size = parse_img_size(args.img_size)

    from ..config import load_config
    from ..engine.predictor import class_names_for
    cfg = load_config(args.config, args.overrides)
    output = args.output or os.path.join(
        "runs", "export", f"{Path(args.config).stem}_{img_size[0]}x{img_size[1]}_b{args.batch}")
    for suffix in FORMATS.values():
        if output.lower().endswith(suffix):
            output = output[: -len(suffix)]
    setup_mindspore(args.device, cfg)
    from ..options import resolve_options
    options = resolve_options(cfg, conv=args.conv, amp_level="O0")
    model, rep = build_and_load(cfg, args.weights, options, decode_in_inference=False)
    print(rep.summary())
    path = export_model(model, args.batch, img_size, output, args.format)
    meta = {"format": args.format, "input_shape": [args.batch, 3, img_size[0], img_size[1]],
            "input": "float32 BGR 0..255, letterboxed (mindyolox.data.preproc), NCHW",
            "outputs": "raw", "output_rows": "dx, dy, log w, log h, sigmoid(obj), sigmoid(cls) x C",
            "conv": args.conv, "options": options.to_dict(), "strides": [int(s) for s in cfg.model.strides], "num_classes": int(cfg.model.num_classes),
            "class_names": list(class_names_for(cfg)), "config": str(args.config),
            "weights": str(args.weights)}
    with open(output + ".json", "w") as f:
        json.dump(meta, f, indent=1)
    print(f"exported {path} (input {meta['input_shape']}, raw outputs); metadata {output}.json")
    return 0


def run():
    """Console entry point (``mindyolox-export``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
