"""Track objects through a video, a folder of frames, a webcam or a stream: a YOLOX detector
and ByteTrack.

    python track.py --config demo/yolox-nano-demo --weights runs/train/yolox-nano-demo/best.ckpt \
        --source datasets/track-demo/img1 --save-dir runs/track
    python track.py --model runs/export/yolox-nano-demo.onnx --source clip.mp4 --classes 0 2
    python track.py --config yolox-s --weights yolox_s --source 0 --max-frames 300      # webcam 0

The detector: a checkpoint (``--config`` + ``--weights``, as ``predict.py``) or an exported
model (``--model`` .onnx / .mindir / .om with its ``.json``, as ``deploy/infer.py``). Its
detections (score = obj * cls, kept from ``--conf``, default 0.1 = ByteTrack's low threshold)
go to ByteTrack (:mod:`mindyolox.track.bytetrack`; defaults of the ByteTrack paper: track
threshold 0.5, match threshold 0.8, track buffer 30 frames, low threshold 0.1;
class-agnostic unless ``--per-class``). Writes ``<save-dir>/<stem>.txt`` (MOTChallenge:
``frame,id,x,y,w,h,score,-1,-1,-1``) and ``<stem>.mp4`` (ids and trails drawn); sources and
names: :mod:`mindyolox.track.run`. Score it with ``mindyolox-tools track-eval``.
"""
import argparse
import os

from ..errors import ConfigError, WeightsError
from ._args import check_thresholds, parse_args, parse_img_size, run_cli

__all__ = ["main", "run"]


def _parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", metavar="FILE", help="YAML recipe (file or shipped name) of --weights")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted recipe overrides, e.g. data.test_size=[320,320]")
    p.add_argument("--weights", help=".ckpt, .pth, .npz or an official name (with --config)")
    p.add_argument("--model", help="an exported .onnx / .mindir / .om (instead of --config/--weights)")
    p.add_argument("--source", required=True, help="video file, folder of frames, webcam index (0) or stream URL")
    p.add_argument("--save-dir", default="runs/track", help="output folder (default runs/track)")
    p.add_argument("--img-size", nargs="+", help="input size of --weights: S or H W (default data.test_size)")
    p.add_argument("--conf", type=float, default=0.1, help="detector score threshold (default 0.1)")
    p.add_argument("--nms", type=float, default=0.45, help="detector NMS IoU threshold (default 0.45)")
    p.add_argument("--class-agnostic", action="store_true", help="detector NMS over all classes together")
    p.add_argument("--classes", nargs="+", help="track only these classes (ids or names)")
    p.add_argument("--track-thresh", type=float, default=0.5, help="high/low detection split (default 0.5)")
    p.add_argument("--match-thresh", type=float, default=0.8, help="first association: 1 - IoU*score limit (0.8)")
    p.add_argument("--track-buffer", type=int, default=30, help="frames a lost track is kept, at 30 fps (30)")
    p.add_argument("--low-thresh", type=float, default=0.1, help="detections at or below are ignored (0.1)")
    p.add_argument("--per-class", action="store_true", help="associate each class on its own (default: all together)")
    p.add_argument("--batch", type=int, default=1, help="frames per detector call (default 1)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: all)")
    p.add_argument("--no-video", action="store_true", help="write the .txt only")
    p.add_argument("--device", default=None, help="CPU | GPU | Ascend")
    p.add_argument("--half", action="store_true", help="float16 inference of --weights")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _check(args):
    check_thresholds(args)
    if bool(args.model) == bool(args.weights):
        raise ConfigError("give either --weights (with --config) or --model")
    if args.weights and not args.config:
        raise ConfigError("--weights needs --config (the recipe of the model)")
    for name in ("track_thresh", "match_thresh", "low_thresh"):
        v = getattr(args, name)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1], got {v}")
    if args.low_thresh >= args.track_thresh:
        raise ConfigError(f"--low-thresh ({args.low_thresh}) must be below --track-thresh ({args.track_thresh})")
    if args.track_buffer < 0 or args.batch < 1:
        raise ConfigError("--track-buffer must be >= 0 and --batch >= 1")


def class_ids(values, names):
    """``--classes`` words (ids or names of ``names``) -> set of ints; ConfigError for an unknown one."""
    if not values:
        return None
    out = set()
    for v in values:
        if str(v).isdigit() and int(v) < len(names):
            out.add(int(v))
        elif v in names:
            out.add(list(names).index(v))
        else:
            raise ConfigError(f"--classes: unknown class '{v}' (ids 0..{len(names) - 1} or names: "
                              f"{', '.join(names[:12])}{', ...' if len(names) > 12 else ''})")
    return out


def main(argv=None):
    args = parse_args(_parser(), argv)
    _check(args)
    from ..runtime.outputs import claim_output_dir
    from ..track.run import plan_track, run_track
    if args.weights:
        from ..config import find_recipe, load_config
        from ..convert.download import resolve_weights
        from ..predict.predictor import class_names_for
        args.weights = resolve_weights(args.weights)
        cfg = load_config(args.config, args.overrides)
        if not os.path.isfile(args.weights):
            raise WeightsError(f"weights file not found: {args.weights}")
        inputs, names = (args.weights, str(find_recipe(args.config))), class_names_for(cfg)
    else:
        from ..deploy.meta import meta_path, read_meta
        from ..predict.predictor import COCO_CLASSES
        if not os.path.isfile(args.model):
            raise WeightsError(f"model file not found: {args.model}")
        inputs = (args.model, meta_path(args.model))
        names = tuple(read_meta(args.model).get("class_names") or ()) or COCO_CLASSES
    classes = class_ids(args.classes, names)
    plan = plan_track(args.source, args.save_dir, inputs=inputs)   # bad source: before the model is built
    tracker_args = {"track_thresh": args.track_thresh, "match_thresh": args.match_thresh,
                    "track_buffer": args.track_buffer, "low_thresh": args.low_thresh}
    with claim_output_dir(args.save_dir):
        predict_batch = _cell(args, cfg) if args.weights else _exported(args)
        out = run_track(predict_batch, plan, names, classes, tracker_args, args.per_class, args.batch,
                        args.max_frames, draw=not args.no_video, progress=not args.no_progress)
    fps = out["frames"] / max(out["seconds"], 1e-9)
    print(f"{plan.stem}: {out['frames']} frames, {out['tracks']} tracks, {out['boxes']} boxes "
          f"({fps:.1f} frames/s)" + (f", {len(out['skipped'])} unreadable frame(s) skipped" if out["skipped"] else ""))
    print(f"tracks written to {plan.txt}" + ("" if args.no_video else f", video to {plan.video}"))
    return 0


def _cell(args, cfg):
    """``predict_batch`` of the checkpoint (the Cell ``Predictor`` of predict.py)."""
    from ..predict.predictor import Predictor
    from ..runtime.context import build_and_load, setup_mindspore
    img_size = parse_img_size(args.img_size) if args.img_size else parse_img_size(cfg.data.test_size, "data.test_size")
    setup_mindspore(args.device, cfg)
    model, rep = build_and_load(cfg, args.weights, half=args.half)
    print(rep.summary())
    import mindspore as ms
    return Predictor(lambda x: model(ms.Tensor(x)), img_size, args.conf, args.nms, args.class_agnostic,
                     batch=args.batch).predict_batch   # one [batch, 3, H, W] call per group of frames


def _exported(args):
    """``predict_batch`` of an exported model: the code path of ``predict.py --model`` and
    deploy/infer.py (:func:`mindyolox.commands.infer.model_predictor`: the input size and batch
    checked against the model's)."""
    from .infer import model_predictor
    predict_batch, _, batch = model_predictor(args)
    args.batch = batch
    return predict_batch


def run():
    """Console entry point (``mindyolox-track``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
