"""Detect objects in an image, a folder of images/videos, a video, a webcam or a stream with a YOLOX model.

    python predict.py --config configs/yolox-nano.yaml --weights ../shared/weights/yolox_nano.pth \
        --source ../shared/data/images/dog.jpg --img-size 416
    python predict.py --config configs/yolox-s.yaml --weights yolox_s.ckpt --source clips/ --conf 0.3

Writes to ``--save-dir`` (default runs/predict), named from the input's whole file name:
``dog.jpg`` annotated (boxes, class names, scores), ``dog.jpg.json`` (detections: ``bbox``
x1,y1,x2,y2 in original pixels, ``score`` = obj*cls, ``class_id``, ``class_name``),
``clip.avi.mp4`` + ``clip.avi.json`` (per frame) for a video (``webcam0.mp4`` / ``stream.mp4``
+ JSON for ``--source 0`` or a stream URL; ``--max-frames N`` stops it), and ``predictions.json``
with everything. The frame source and the loop are ``deploy/infer.py``'s
(:mod:`mindyolox.predict.loop`). Official demo defaults: conf 0.25, NMS 0.45, input ``data.test_size``. An
unreadable file inside a folder is skipped and reported. Refused before anything is written:
an output that would replace an input (e.g. ``--save-dir`` = the source folder), and a
``--save-dir`` another running process writes to (:mod:`mindyolox.runtime.outputs`).
"""
import argparse
import os

from ..convert.download import resolve_weights
from ..errors import WeightsError
from ..runtime.context import build_and_load, setup_mindspore
from ._args import add_config_args, add_predict_args, check_thresholds, parse_args, parse_img_size, run_cli

__all__ = ["main", "run"]


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, example="data.test_size=[320,320]")
    parser.add_argument("--weights", required=True, help=".ckpt (mindyolox), .pth (official), .npz, or an official name such as yolox_s (downloaded once)")
    parser.add_argument("--img-size", nargs="+", help="input size: S or H W (default data.test_size)")
    add_predict_args(parser)
    parser.add_argument("--device", default=None, help="CPU | GPU | Ascend (default: MindSpore's)")
    parser.add_argument("--half", action="store_true",
                        help="float16 inference (mixed precision O2: BatchNorm and outputs in float32)")
    return parser


def main(argv=None):
    args = parse_args(_parser(), argv)
    args.weights = resolve_weights(args.weights)
    check_thresholds(args)

    from ..config import find_recipe, load_config
    cfg = load_config(args.config, args.overrides)
    img_size = parse_img_size(args.img_size) if args.img_size else parse_img_size(cfg.data.test_size,
                                                                                   "data.test_size")
    if not os.path.isfile(args.weights):
        raise WeightsError(f"weights file not found: {args.weights}")
    from ..predict.loop import plan_source, print_outcome, run_plan
    from ..predict.predictor import Predictor, class_names_for
    from ..runtime.outputs import claim_output_dir
    save_dir = None if args.no_save else args.save_dir
    # fail on a bad --source, or an output that would replace an input, before building the model
    plan = plan_source(args.source, save_dir, inputs=(args.weights, str(find_recipe(args.config))))
    with claim_output_dir(save_dir):
        setup_mindspore(args.device, cfg)
        model, rep = build_and_load(cfg, args.weights, half=args.half)
        print(rep.summary())

        import mindspore as ms
        predictor = Predictor(lambda x: model(ms.Tensor(x)), img_size, args.conf, args.nms, args.class_agnostic)
        out = run_plan(predictor.predict_batch, plan, class_names_for(cfg), max_frames=args.max_frames,
                       progress=not args.no_progress)
    print_outcome(out, save_dir)
    return 0


def run():
    """Console entry point (``mindyolox-predict``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
