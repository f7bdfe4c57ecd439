"""Export a YOLOX model for deployment: MindIR, ONNX or AIR, with BatchNorm folded.

    python deploy/export.py --config configs/yolox-nano.yaml --weights ../shared/weights/yolox_nano.pth \
        --format ONNX --img-size 416 --dynamic-batch --output runs/export/nano416
    python deploy/export.py --config configs/yolox-nano.yaml --weights ../shared/weights/yolox_nano.pth \
        --format ONNX --img-size 416 --nms --conf 0.25 --iou 0.45 --topk 100 --output runs/export/nano416_e2e
    python deploy/export.py --config configs/yolox-s.yaml --weights yolox_s.ckpt --format MINDIR --img-size 640

Writes ``<output><.mindir|.onnx|.air>`` and ``<output>.json`` (input size and layout, exact
preprocessing, strides, class names, what the graph contains, node counts) for
``deploy/infer.py`` and ``test.py --model``. See :mod:`mindyolox.deploy.export` for what each
option puts in the graph; ``--target ascend`` also writes the ATC / converter_lite commands,
an AIPP config and the ``.om`` metadata beside the model (:mod:`mindyolox.deploy.ascend`).
"""
import argparse
import os
from pathlib import Path

from ..convert.download import resolve_weights
from ..runtime.context import setup_mindspore
from ..errors import WeightsError
from ._args import add_config_args, parse_args, parse_img_size, run_cli
from ..deploy.export import DEFAULT_OPSET, FORMATS, ExportSpec, export

__all__ = ["main", "run"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, example="model.num_classes=20")
    parser.add_argument("--weights", required=True, help=".ckpt (mindyolox), .pth (official), .npz, or an official name such as yolox_s (downloaded once)")
    parser.add_argument("--format", default="MINDIR", type=str.upper, choices=sorted(FORMATS),
                        help="MINDIR (default), ONNX or AIR (Ascend host only)")
    parser.add_argument("--img-size", nargs="+", help="input size: S or H W (default: the recipe's data.test_size)")
    parser.add_argument("--batch", type=int, default=1, help="batch of the graph (default 1; ignored with --dynamic-batch)")
    parser.add_argument("--dynamic-batch", action="store_true", help="ONNX: any batch at run time")
    parser.add_argument("--target", default="cpu", choices=("cpu", "gpu", "ascend"),
                        help="where the model will run (default cpu): sets the convolution ops; ascend "
                             "also writes the ATC/converter_lite commands and an AIPP config")
    parser.add_argument("--conv", default=None, choices=("native", "im2col"),
                        help="convolution ops (default: im2col for a CPU MindIR, native Conv2D otherwise)")
    parser.add_argument("--decode", action="store_true", help="decode boxes in the graph (cx, cy, w, h px)")
    parser.add_argument("--nms", action="store_true", help="ONNX: end-to-end NMS in the graph (implies --decode)")
    parser.add_argument("--conf", type=float, default=0.25, help="--nms score threshold (default 0.25)")
    parser.add_argument("--iou", type=float, default=0.45, help="--nms IoU threshold (default 0.45)")
    parser.add_argument("--topk", type=int, default=100, help="--nms boxes kept per image (default 100)")
    parser.add_argument("--class-agnostic", action="store_true", help="--nms over all classes together")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--no-simplify", action="store_true", help="ONNX: skip onnxslim/onnxsim even when installed")
    parser.add_argument("--half", action="store_true", help="float16 graph (MINDIR/AIR; float32 input and outputs)")
    parser.add_argument("--ascend-batches", default="1,4,8", help="--target ascend: dynamic batch sizes for ATC (default 1,4,8)")
    parser.add_argument("--soc-version", default="Ascend310P3", help="--target ascend: ATC --soc_version (default Ascend310P3)")
    parser.add_argument("--output", help="output path without suffix (default runs/export/<recipe>_<H>x<W>_b<batch>)")
    parser.add_argument("--device", default=None, help="MindSpore device for the export (default CPU / MindSpore's)")
    args = parse_args(parser, argv)
    args.weights = resolve_weights(args.weights)
    from ..config import load_config
    cfg = load_config(args.config, args.overrides)
    if args.img_size:
        img_size = parse_img_size(args.img_size)
    else:
        img_size = parse_img_size(list(cfg.data.test_size), flag=f"{args.config}: data.test_size")
        print(f"input size {img_size[0]}x{img_size[1]} (the recipe's data.test_size; --img-size sets another)")
    spec = ExportSpec(args.format, args.batch, img_size, args.target, args.conv, args.decode, args.nms,
                      args.conf, args.iou, args.topk, args.class_agnostic, args.dynamic_batch, args.opset,
                      args.half, not args.no_simplify).check()

    if not os.path.isfile(args.weights):
        raise WeightsError(f"weights file not found: {args.weights}")
    tag = "bN" if spec.dynamic_batch else f"b{spec.batch}"
    output = args.output or os.path.join("runs", "export", f"{Path(args.config).stem}_{img_size[0]}x{img_size[1]}_{tag}")
    for suffix in FORMATS.values():
        if output.lower().endswith(suffix):
            output = output[: -len(suffix)]
    setup_mindspore(args.device, cfg)
    path, meta = export(cfg, args.weights, spec, output, config_name=args.config)
    g = meta["graph"]
    inside = "NMS" if g["nms"] else ("decoded boxes" if g["decode"] else "raw outputs")
    line = (f"exported {path}: input {meta['input']['shape']} {meta['input']['dtype']}, {inside}, "
            f"BN folded, conv {g['conv']}, {g['dtype']}")
    if spec.fmt == "ONNX":
        line += (f", opset {g['opset']}, {g['node_count']} nodes (exporter {g['exporter_nodes']}"
                 + (f", simplified by {g['simplified_by']})" if g["simplified_by"] else
                    f", not simplified: {g['simplify_note']})"))
    print(line)
    print(f"metadata {output}.json")
    if spec.target == "ascend":
        from ..deploy.ascend import write_recipe
        batches = [int(b) for b in str(args.ascend_batches).split(",") if b.strip()]
        for p in write_recipe(path, meta, batches, args.soc_version):
            print(f"ascend: wrote {p}")
    return 0


def run():
    """Console entry point (``mindyolox-export``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
