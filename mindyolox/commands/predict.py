"""Detect objects in images, folders, glob patterns, videos, a webcam or a stream with a YOLOX model (a checkpoint or an exported one).

    python predict.py --config configs/yolox-nano.yaml --weights ../shared/weights/yolox_nano.pth \
        --source ../shared/data/images/dog.jpg --img-size 416
    python predict.py --config configs/yolox-s.yaml --weights yolox_s.ckpt --source 'clips/*.mp4' --batch 8
    python predict.py --model runs/export/nano416.onnx --source 0 --save-txt     # exported model, webcam 0

The one prediction front end: ``--weights`` builds the MindSpore Cell of ``--config``;
``--model`` runs an exported .onnx / .mindir / .om through the code path of ``deploy/infer.py``
(which stays, for exported models only). Sources: an image, a folder, a glob pattern (quoted),
a video file, a webcam index, an RTSP/HTTP URL. ``--batch N``: N images / video frames per
graph call (a Cell: the last group padded to N, one compiled graph). Images and frames are
decoded by a reader thread and drawn / written by a writer thread (:mod:`mindyolox.predict.workers`).

Writes to ``--save-dir`` (default runs/predict), named from the input's whole file name:
``dog.jpg`` annotated (boxes, class names, scores), ``dog.jpg.json`` (detections: ``bbox``
x1,y1,x2,y2 in original pixels, ``score`` = obj*cls, ``class_id``, ``class_name``),
``clip.avi.mp4`` + ``clip.avi.json`` (per frame) for a video (``webcam0.mp4`` / ``stream.mp4``
+ JSON for ``--source 0`` or a stream URL; ``--max-frames N`` stops it), and ``predictions.json``
with everything; ``--save-txt``: YOLO labels under ``labels/``; ``--save-coco``:
``predictions_coco.json`` (:mod:`mindyolox.predict.labels`). Official demo defaults: conf 0.25,
NMS 0.45, input ``data.test_size``. An unreadable file inside a folder is skipped and reported;
a stream that stops is one line, its frames kept; Ctrl-C keeps what was written. Refused
before anything is written: an output that would replace an input (e.g. ``--save-dir`` = the
source folder), and a ``--save-dir`` another running process writes to
(:mod:`mindyolox.runtime.outputs`).
"""
import argparse
import os

from ..convert.download import resolve_weights
from ..errors import ConfigError, WeightsError
from ..runtime.context import build_and_load, setup_mindspore
from ._args import add_config_args, add_predict_args, check_thresholds, parse_args, parse_img_size, run_cli

__all__ = ["main", "run"]


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, example="data.test_size=[320,320]", required=False)   # needed with --weights
    parser.add_argument("--weights", help=".ckpt (mindyolox), .pth (official), .npz, or an official name such as "
                                          "yolox_s (downloaded once); or give --model")
    parser.add_argument("--model", help="an exported .onnx / .mindir / .om (with its .json beside it) instead of "
                                        "--weights: the deploy/infer.py path; --config is then optional")
    parser.add_argument("--img-size", nargs="+", help="input size: S or H W (default data.test_size; with --model "
                                                      "a check against the model's)")
    parser.add_argument("--batch", type=int, default=None,
                        help="images / video frames per graph call (default 1; --model: the graph's batch, else 1)")
    add_predict_args(parser)
    parser.add_argument("--device", default=None, help="CPU | GPU | Ascend (default: MindSpore's)")
    parser.add_argument("--backend", default="auto", choices=["auto", "mindspore", "lite"],
                        help="--model .mindir: MindSpore Lite when installed (auto), or mindspore GraphCell")
    parser.add_argument("--half", action="store_true",
                        help="float16 inference (mixed precision O2: BatchNorm and outputs in float32)")
    return parser


def main(argv=None):
    args = parse_args(_parser(), argv)
    if bool(args.weights) == bool(args.model):
        raise ConfigError("give exactly one of --weights (a checkpoint) and --model (an exported .onnx / .mindir / .om)")
    if args.batch is not None and args.batch <= 0:
        raise ConfigError(f"--batch must be positive, got {args.batch}")
    check_thresholds(args)
    if args.model:
        return _main_model(args)
    if not args.config:
        raise ConfigError("--weights needs --config (the recipe of the model)")
    args.weights = resolve_weights(args.weights)

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
    plan = plan_source(args.source, save_dir, inputs=(args.weights, str(find_recipe(args.config))),
                       save_txt=args.save_txt, save_coco=args.save_coco)
    batch = args.batch or 1
    with claim_output_dir(save_dir):
        setup_mindspore(args.device, cfg)
        model, rep = build_and_load(cfg, args.weights, half=args.half)
        print(rep.summary())

        import mindspore as ms
        predictor = Predictor(lambda x: model(ms.Tensor(x)), img_size, args.conf, args.nms, args.class_agnostic,
                              batch=batch)
        if batch > 1:
            print(f"{batch} image(s) per graph call (the last group padded to {batch}: one compiled graph)")
        out = run_plan(predictor.predict_batch, plan, class_names_for(cfg), batch=batch, max_frames=args.max_frames,
                       progress=not args.no_progress)
    print_outcome(out, save_dir)
    return 0


def _main_model(args):
    """``predict.py --model FILE``: an exported artifact through ``deploy/infer.py``'s code path
    (:func:`mindyolox.commands.infer.model_predictor`); class names from the model's ``.json``,
    else from ``--config`` when given, else COCO's."""
    if args.half:
        raise ConfigError("--model runs the artifact as exported: no --half (export with --half instead)")
    if args.img_size:
        args.img_size = list(parse_img_size(args.img_size))
    from ..deploy.meta import meta_path
    from ..predict.loop import plan_source, print_outcome, run_plan
    from ..predict.predictor import COCO_CLASSES, class_names_for
    from ..runtime.outputs import claim_output_dir
    from .infer import model_predictor
    names = None
    inputs = [args.model, meta_path(args.model)]
    if args.config:
        from ..config import find_recipe, load_config
        names = class_names_for(load_config(args.config, args.overrides))
        inputs.append(str(find_recipe(args.config)))
    elif args.overrides:
        raise ConfigError(f"key=value overrides need --config (got {' '.join(args.overrides)})")
    save_dir = None if args.no_save else args.save_dir
    plan = plan_source(args.source, save_dir, inputs=inputs, save_txt=args.save_txt, save_coco=args.save_coco)
    with claim_output_dir(save_dir):
        predict_batch, meta_names, batch = model_predictor(args)
        out = run_plan(predict_batch, plan, meta_names or names or COCO_CLASSES, batch=batch,
                       max_frames=args.max_frames, progress=not args.no_progress)
    print_outcome(out, save_dir)
    if out["images"]:
        print(f"{out['images']} image(s) in {out['seconds']:.2f} s")
    return 0


def run():
    """Console entry point (``mindyolox-predict``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
