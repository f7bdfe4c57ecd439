"""Run an exported YOLOX model (.onnx, .mindir, .om) on images, folders, videos, a webcam or
a stream, in real batches.

    python deploy/infer.py --model runs/export/nano416.onnx --source ../shared/data/images/dog.jpg
    python deploy/infer.py --model runs/export/nano416.mindir --source images/ --batch 4
    python deploy/infer.py --model nano416.onnx --source 0            # webcam 0
    python deploy/infer.py --model nano416.onnx --source rtsp://host/stream --max-frames 100

Everything about the model (input size, batch, what the graph contains, strides, class
names) comes from the ``.json`` written by deploy/export.py beside it. Same preprocessing
(``mindyolox.data.preproc``) and postprocessing (official ``postprocess``, demo defaults conf
0.25 / NMS 0.45; an end-to-end ``--nms`` graph's own NMS) as ``predict.py``, the same frame
source and loop (:mod:`mindyolox.predict.loop`), and the same outputs in ``--save-dir``
(default runs/infer), named from the input's whole file name: ``dog.jpg`` / ``dog.jpg.json``
per image, ``clip.avi.mp4`` + per-frame ``clip.avi.json`` per video (``webcam0.mp4`` /
``stream.mp4`` + JSON for a webcam or stream), ``predictions.json``. An unreadable image or
video inside a folder is skipped and named, the rest processed and the summary written; an
output that would replace an input, or a ``--save-dir`` in use by another process, is refused
before anything is written. ``--batch`` images go through the graph at once (default: the
graph's fixed batch, else 1). ``predict.py --model FILE`` is the same code path
(:func:`model_predictor`) and the primary front end; this script stays for exported models.
"""
import argparse
import functools

from ..errors import ConfigError, MindYOLOXError
from ..runtime.outputs import claim_output_dir
from ._args import add_predict_args, check_thresholds, run_cli

__all__ = ["main", "run", "model_predictor"]


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "--mindir", dest="model", required=True,
                        help="exported .onnx, .mindir or .om (with its .json beside it)")
    parser.add_argument("--img-size", type=int, nargs="+",
                        help="check: the input size the model must have (S or H W); default from the .json")
    parser.add_argument("--batch", type=int, help="images per graph call (default: the graph's batch, else 1)")
    parser.add_argument("--device", default=None, help="cpu | gpu | ascend (ONNX also cuda, tensorrt, openvino)")
    parser.add_argument("--backend", default="auto", choices=["auto", "mindspore", "lite"],
                        help="MindIR: MindSpore Lite when installed (auto), or mindspore GraphCell")
    add_predict_args(parser, save_dir="runs/infer")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    check_thresholds(args)
    if args.batch is not None and args.batch <= 0:
        raise ConfigError(f"--batch must be positive, got {args.batch}")
    from ..deploy.meta import meta_path
    from ..predict.loop import plan_source, print_outcome, run_plan
    from ..predict.predictor import COCO_CLASSES
    save_dir = None if args.no_save else args.save_dir
    # a bad --source, or an output that would replace an input, fails before the model is opened
    plan = plan_source(args.source, save_dir, inputs=(args.model, meta_path(args.model)),
                       save_txt=args.save_txt, save_coco=args.save_coco)
    with claim_output_dir(save_dir):
        predict_batch, names, batch = model_predictor(args)
        out = run_plan(predict_batch, plan, names or COCO_CLASSES, batch=batch, max_frames=args.max_frames,
                       progress=not args.no_progress, desc="infer")
    print_outcome(out, save_dir)
    if out["images"]:
        print(f"{out['images']} image(s) in {out['seconds']:.2f} s")
    return 0


def model_predictor(args):
    """``(predict_batch, class names or (), batch)`` for an exported ``args.model`` (the one code
    path of ``deploy/infer.py`` and ``predict.py --model``): :func:`_open`'s runner, then
    :func:`mindyolox.deploy.runners.predict_images` with ``args.conf / nms / class_agnostic``;
    the class names of the model's ``.json``."""
    runner, batch = _open(args)
    from ..deploy.runners import predict_images
    predict_batch = functools.partial(predict_images, runner, conf=args.conf, nms=args.nms,
                                      class_agnostic=args.class_agnostic)
    return predict_batch, tuple(runner.meta.get("class_names") or ()), batch


def _open(args):
    """The runner of ``--model``, checked against ``--img-size`` and ``--batch``, and the
    batch to use; prints what runs."""
    from ..deploy.runners import open_runner
    runner = open_runner(args.model, args.device, getattr(args, "backend", "auto"))
    if args.img_size:
        size = [int(v) for v in args.img_size]
        want = tuple(size * 2 if len(size) == 1 else size[:2])
        if want != runner.img_size:
            raise MindYOLOXError(f"{args.model} takes {runner.img_size[0]}x{runner.img_size[1]} inputs, not "
                                 f"{want[0]}x{want[1]} (re-export with --img-size {want[0]} {want[1]})")
    batch = args.batch or runner.batch or 1
    if runner.batch is not None and batch > runner.batch and batch % runner.batch:
        raise MindYOLOXError(f"{args.model} has a fixed batch of {runner.batch}: --batch {batch} is not a "
                             f"multiple of it (re-export with --dynamic-batch or --batch {batch})")
    b = "any batch" if runner.batch is None else f"batch {runner.batch}"
    print(f"running {args.model} with {runner.backend} (input {b} x 3 x {runner.img_size[0]} x "
          f"{runner.img_size[1]}, {runner.kind} outputs), {batch} image(s) per call")
    return runner, batch


def run():
    """Console entry point (``mindyolox-infer``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
