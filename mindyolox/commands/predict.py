"""Detect objects in an image, a folder of images/videos or a video with a YOLOX model.

    python predict.py --config configs/yolox-nano.yaml --weights ../shared/weights/yolox_nano.pth \
        --source ../shared/data/images/dog.jpg --img-size 416
    python predict.py --config configs/yolox-s.yaml --weights yolox_s.ckpt --source clips/ --conf 0.3

Writes to ``--save-dir`` (default runs/predict), named from the input's whole file name:
``dog.jpg`` annotated (boxes, class names, scores), ``dog.jpg.json`` (detections: ``bbox``
x1,y1,x2,y2 in original pixels, ``score`` = obj*cls, ``class_id``, ``class_name``),
``clip.avi.mp4`` + ``clip.avi.json`` (per frame) for a video, and ``predictions.json`` with
everything. Official demo defaults: conf 0.25, NMS 0.45, input ``data.test_size``. An
unreadable file inside a folder is skipped and reported. Refused before anything is written:
an output that would replace an input (e.g. ``--save-dir`` = the source folder), and a
``--save-dir`` another running process writes to (:mod:`mindyolox.runtime.outputs`).
"""
import argparse
import os

from ..runtime.context import build_and_load, parse_img_size, setup_mindspore
from ..predict.predictor import NOT_MEDIA
from ..errors import ConfigError, WeightsError
from ..convert.download import resolve_weights
from ..utils.cli import add_config_args, parse_args, run_cli


def add_predict_args(parser, save_dir="runs/predict"):
    """Options shared with deploy/infer.py (``save_dir``: that script's default output folder)."""
    parser.add_argument("--source", required=True, help="image, video, or folder of them")
    parser.add_argument("--conf", type=float, default=0.25, help="score threshold obj*cls (default 0.25)")
    parser.add_argument("--nms", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    parser.add_argument("--class-agnostic", action="store_true", help="NMS over all classes together")
    parser.add_argument("--save-dir", default=save_dir, help=f"output folder (default {save_dir})")
    parser.add_argument("--no-save", action="store_true", help="write nothing, print detections only")
    parser.add_argument("--device", default=None, help="CPU | GPU | Ascend (default: MindSpore's)")
    parser.add_argument("--half", action="store_true",
                        help="float16 inference (mixed precision O2: BatchNorm and outputs in float32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def check_thresholds(args):
    if not 0.0 <= args.conf <= 1.0:
        raise ConfigError(f"--conf must be in [0, 1], got {args.conf}")
    if not 0.0 <= args.nms <= 1.0:
        raise ConfigError(f"--nms must be in [0, 1], got {args.nms}")


def report(out, save_dir):
    """Print a one-line summary per file (top detections) and where outputs went."""
    for path, res in out["results"].items():
        if res and isinstance(res[0], dict) and "frame" in res[0]:
            n = sum(len(f["detections"]) for f in res)
            print(f"{path}: {len(res)} frames, {n} detections")
        else:
            top = ", ".join(f"{d['class_name']} {d['score']:.2f}" for d in res[:8])
            print(f"{path}: {len(res)} detections" + (f" ({top}{', ...' if len(res) > 8 else ''})" if res else ""))
    if out["skipped"]:
        not_media = sum(reason == NOT_MEDIA for _, reason in out["skipped"])
        print(f"skipped {len(out['skipped'])} file(s): {not_media} not images or videos, "
              f"{len(out['skipped']) - not_media} unreadable")
    if save_dir:
        print(f"results written to {save_dir}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, example="data.test_size=[320,320]")
    parser.add_argument("--weights", required=True, help=".ckpt (mindyolox), .pth (official), .npz, or an official name such as yolox_s (downloaded once)")
    parser.add_argument("--img-size", nargs="+", help="input size: S or H W (default data.test_size)")
    add_predict_args(parser)
    args = parse_args(parser, argv)
    args.weights = resolve_weights(args.weights)
    check_thresholds(args)

    from ..config import load_config
    cfg = load_config(args.config, args.overrides)
    img_size = parse_img_size(args.img_size) if args.img_size else parse_img_size(cfg.data.test_size,
                                                                                   "data.test_size")
    if not os.path.isfile(args.weights):
        raise WeightsError(f"weights file not found: {args.weights}")
    from ..runtime.outputs import claim_output_dir
    from ..predict.predictor import (Predictor, check_prediction_outputs, class_names_for, list_source,
                                    run_prediction)
    from ..config import find_recipe
    save_dir = None if args.no_save else args.save_dir
    inputs = (args.weights, str(find_recipe(args.config)))
    # fail on a bad --source, or an output that would replace an input, before building the model
    if save_dir:
        check_prediction_outputs(args.source, save_dir, inputs)
    else:
        list_source(args.source)
    with claim_output_dir(save_dir):
        setup_mindspore(args.device, cfg)
        model, rep = build_and_load(cfg, args.weights, half=args.half)
        print(rep.summary())

        import mindspore as ms
        predictor = Predictor(lambda x: model(ms.Tensor(x)), img_size, args.conf, args.nms, args.class_agnostic)
        out = run_prediction(predictor, args.source, save_dir, class_names_for(cfg),
                             progress=not args.no_progress, inputs=inputs)
    report(out, save_dir)
    return 0


def run():
    """Console entry point (``mindyolox-predict``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
