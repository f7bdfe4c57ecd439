"""Evaluate a YOLOX model: COCO bbox AP (official evaluator) or Pascal VOC mAP.

    python test.py --config configs/yolox-s.yaml --weights yolox_s.pth
    python test.py --config configs/yolox-nano.yaml --weights ../shared/weights/yolox_nano.pth \
        --img-size 416 --conf 0.001 --ann ../shared/data/coco_tiny/annotations/instances_val2017.json \
        --images ../shared/data/coco_tiny/val2017 --json-out metrics.json
    msrun --worker_num=4 --local_worker_num=4 test.py --config configs/yolox-s.yaml --weights yolox_s.pth --distributed
    python test.py --config configs/yolox-nano.yaml --model runs/export/nano416.onnx   # an exported artifact
    python test.py --config yolox-nano --weights best.ckpt --data my_data.yaml [--metric voc]   # YOLO-format data

``--model FILE`` (.onnx, .mindir, .om with the .json of deploy/export.py beside it) evaluates
the exported artifact instead of a Cell built from ``--weights``: same data, letterbox,
postprocess and COCOeval (:mod:`mindyolox.evaluation.artifacts`); the input size is the
artifact's, ``--batch`` defaults to its fixed batch, ``--device`` picks the runtime
(onnxruntime providers, MindSpore device).

``--data YAML`` evaluates the ``val`` split of a YOLO-format dataset YAML (ultralytics: ``path``,
``train``, ``val``, ``names``; classes and ``model.num_classes`` from it) with the COCO
evaluator, the ground truth being the COCO dict the labels are read into
(:mod:`mindyolox.data.yolo`). ``--metric voc`` scores any dataset with the Pascal VOC mAP
instead (default ``auto``: VOC for a VOC dataset, COCO otherwise).

Prints the 12 COCO stats (VOC: mAP at IoU 0.5:0.95 and 0.5, area and 11-point metrics), a
per-class AP table and timing (forward ms/img, NMS ms/img, images/s); writes the detections
as COCO result JSON (``--det-out``, default ``<save-dir>/detections.json``). ``--json-out``
writes the metrics: ``{"AP50_95", "AP50", "stats": [...], "per_class_AP", "timing", ...}``
(fractions in [0, 1]; null for a class without ground truth). Defaults come from the recipe:
``data.test_size``, ``test.batch_size``, ``test.conf``, ``test.nms``, ``test.class_agnostic``;
the flags override them. ``--distributed`` (under ``msrun``): each rank runs its shard of the
images, rank 0 computes the metrics (the same 12 stats as one process) and prints and writes
everything; every other rank prints one line with the AP it received and its own timing.

Analysis (COCO metric on COCO / YOLO-format data, rank 0; ``--no-analysis`` or
``test.analysis=false`` to skip): next to the detections, ``per_class.csv`` (images, instances,
P, R, F1 at ``--analysis-conf``, default 0.25; AP50, AP50:95), ``confusion_matrix.csv`` /
``_normalized.csv`` / ``.png`` (IoU ``--analysis-iou``, default 0.45), ``pr_curve.png``,
``f1_curve.png``, ``p_curve.png``, ``r_curve.png``, ``curves.csv``, ``worst_images/``, the
TIDE error breakdown ``tide.csv`` / ``tide.png`` (:mod:`mindyolox.evaluation.tide`); the
per-class table, the TIDE line and "best F1 x.xx at conf y.yy: deploy at --conf y.yy" are printed
(:mod:`mindyolox.evaluation.analysis`, definitions there and in docs/evaluation.md).

Outputs never replace inputs, and two evaluations never share an output: before anything is
written, ``--det-out`` / ``--json-out`` that would replace an input (the annotation file, the
weights or model and its ``.json``, the recipe) or each other are refused with one line, and
the folder of the detections (``--save-dir``) and of ``--json-out`` is claimed with the run
lock (``<folder>/.run.lock``, :mod:`mindyolox.runtime.outputs`): a second evaluation into a
folder in use stops with one line naming the process that holds it.
"""
import argparse
import contextlib
import os

from ..runtime.outputs import check_outputs, save_json
from ..runtime.context import build_and_load, setup_mindspore
from ..errors import ConfigError, DataError, WeightsError
from ..convert.download import resolve_weights
from ._args import add_config_args, load_data_config, parse_args, parse_img_size, run_cli


def _no_nan(obj):
    """NaN (a class without ground truth) -> None, so the file is strict JSON."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def main(argv=None):
    with contextlib.ExitStack() as claims:  # the output folders' locks, released at the end
        return _main(argv, claims)


def _main(argv, claims):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, example="test.conf=0.01")
    parser.add_argument("--weights", help=".ckpt (mindyolox), .pth (official), .npz, or an official name such as yolox_s (downloaded once)")
    parser.add_argument("--model", help="evaluate an exported .onnx / .mindir / .om instead of --weights")
    parser.add_argument("--img-size", nargs="+", help="eval size: S or H W (default data.test_size)")
    parser.add_argument("--batch", type=int, help="batch size (default test.batch_size)")
    parser.add_argument("--conf", type=float, help="score threshold obj*cls (default test.conf)")
    parser.add_argument("--nms", type=float, help="NMS IoU threshold (default test.nms)")
    parser.add_argument("--class-agnostic", action="store_true", help="NMS over all classes together")
    parser.add_argument("--data", metavar="YAML", help="a YOLO-format dataset YAML: evaluate its val split "
                                                       "(data.format=yolo, classes and model.num_classes from it)")
    parser.add_argument("--metric", choices=("auto", "coco", "voc"), default="auto",
                        help="COCO AP (pycocotools) or Pascal VOC mAP; auto: VOC for VOC data, else COCO")
    parser.add_argument("--ann", help="COCO annotation JSON (overrides data.data_dir/data.val_ann)")
    parser.add_argument("--images", help="image folder for --ann (overrides data.data_dir/data.val_images)")
    parser.add_argument("--workers", type=int, default=None, help="loader worker processes (default data.num_workers)")
    parser.add_argument("--save-dir", default="runs/test", help="where the detections JSON goes")
    parser.add_argument("--det-out", help="detections JSON path (default <save-dir>/detections.json)")
    parser.add_argument("--json-out", help="write the metrics as JSON here")
    parser.add_argument("--device", default=None, help="CPU | GPU | Ascend (default: MindSpore's)")
    parser.add_argument("--half", action="store_true",
                        help="float16 inference (mixed precision O2: BatchNorm and outputs in float32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-analysis", action="store_true",
                        help="do not write the analysis (P/R, confusion matrix, curves, worst images) into --save-dir")
    parser.add_argument("--analysis-conf", type=float,
                        help="operating confidence of the analysis (default test.analysis_conf, 0.25)")
    parser.add_argument("--analysis-iou", type=float,
                        help="IoU of a confusion-matrix match (default test.analysis_iou, 0.45)")
    parser.add_argument("--distributed", action="store_true",
                        help="one shard of the images per msrun worker; rank 0 reports")
    args = parse_args(parser, argv)
    artifact = None
    if bool(args.weights) == bool(args.model):
        raise ConfigError("give exactly one of --weights (a checkpoint) and --model (an exported artifact)")
    if args.model:
        if args.distributed or args.half:
            raise ConfigError("--model evaluates the artifact as exported: no --distributed / --half")
        from ..evaluation.artifacts import open_artifact
        artifact = open_artifact(args.model, args.device)
        if args.img_size and tuple(parse_img_size(args.img_size)) != artifact.runner.img_size:
            raise ConfigError(f"{args.model} takes {artifact.runner.img_size}, not --img-size {args.img_size}")
        args.img_size = list(artifact.runner.img_size)
        if args.batch is None:
            args.batch = artifact.runner.batch or 8
    else:
        args.weights = resolve_weights(args.weights)

    cfg = load_data_config(args.config, args.data, args.overrides)
    img_size = parse_img_size(args.img_size) if args.img_size else parse_img_size(cfg.data.test_size,
                                                                                   "data.test_size")
    batch = int(args.batch if args.batch is not None else cfg.test.batch_size)
    if batch <= 0:
        raise ConfigError(f"--batch must be positive, got {batch}")
    conf = float(args.conf if args.conf is not None else cfg.test.conf)
    nms = float(args.nms if args.nms is not None else cfg.test.nms)
    if not (0.0 <= nms <= 1.0):
        raise ConfigError(f"--nms must be in [0, 1], got {nms}")
    agnostic = bool(args.class_agnostic or cfg.test.class_agnostic)
    workers = int(args.workers if args.workers is not None else cfg.data.num_workers)
    if artifact is None and not os.path.isfile(args.weights):
        raise WeightsError(f"weights file not found: {args.weights}")

    from ..data import COCODataset, build_dataset
    if (args.ann or args.images) and args.data:
        raise DataError("give either --data (a dataset YAML) or --ann/--images (a COCO JSON), not both")
    if args.ann or args.images:
        if not (args.ann and args.images):
            raise DataError("--ann and --images go together (COCO JSON and its image folder)")
        if not os.path.isdir(args.images):
            raise DataError(f"image folder {args.images} not found (--images)")
        dataset = COCODataset(args.ann, args.images)
    else:
        dataset = build_dataset(cfg.data, "val")
    if len(dataset) == 0:
        raise DataError(f"{dataset.name}: no images to evaluate")

    det_out = args.det_out or os.path.join(args.save_dir, "detections.json")
    analysis = _analysis_settings(args, cfg)
    _check_outputs(args, det_out, dataset, analysis)

    options = None
    if artifact is None:
        setup_mindspore(args.device, cfg)
        from ..options import resolve_options
        from ..runtime.context import apply_device_context
        options = resolve_options(cfg, amp_level="O2" if args.half else "O0")
        apply_device_context(options)  # jit level and precision mode before HCCL init (options.apply_device_options)
    rank, world = 0, 1
    if args.distributed:
        from ..runtime.distributed import init_data_parallel
        rank, world = init_data_parallel()
    say = print if rank == 0 else (lambda *a, **k: None)
    if rank == 0:  # the rank that writes
        from ..runtime.outputs import claim_output_dir
        det_dir = os.path.dirname(os.path.abspath(det_out))
        claims.enter_context(claim_output_dir(det_dir, "--det-out" if args.det_out else "--save-dir"))
        if args.json_out and os.path.dirname(os.path.abspath(args.json_out)) != det_dir:
            claims.enter_context(claim_output_dir(os.path.dirname(os.path.abspath(args.json_out)), "--json-out"))
    if artifact is None:
        model, report = build_and_load(cfg, args.weights, options=options, half=args.half)
        say(report.summary())
    else:
        model = artifact
        say(f"evaluating the exported {args.model} ({artifact.runner.backend}, {artifact.runner.kind} outputs)")

    from ..evaluation import evaluate, format_timing
    say(f"evaluating {dataset!r} at {img_size[0]}x{img_size[1]}, batch {batch}, conf {conf}, "
        f"nms {nms}{' class-agnostic' if agnostic else ''}" + (f", {world} ranks" if world > 1 else ""))
    res = evaluate(model, dataset, img_size, batch, conf, nms, agnostic, num_workers=workers,
                   progress=not args.no_progress and rank == 0, det_file=det_out, rank=rank, world_size=world,
                   metric=None if args.metric == "auto" else args.metric)
    if world > 1:
        t = res["timing"]
        print(f"rank {rank}/{world}: AP50:95 {100 * res['AP50_95']:.2f}  AP50 {100 * res['AP50']:.2f} "
              f"(metrics of rank 0); this rank: {t['images']} images in {t['total_s']:.1f} s, "
              f"waited {t['wait_s']:.1f} s for the others", flush=True)
    if rank != 0:
        return 0
    print(res["summary"])
    print("per-class AP (%):")
    print(res["per_class_table"])
    print("timing: " + format_timing(res["timing"]))
    if res["skipped_images"]:
        print(f"skipped {len(res['skipped_images'])} unreadable image(s): "
              + ", ".join(res["skipped_images"][:5]) + (" ..." if len(res["skipped_images"]) > 5 else ""))
    print(f"AP50:95 {100 * res['AP50_95']:.2f}  AP50 {100 * res['AP50']:.2f}  "
          f"({res['num_detections']} detections written to {det_out})")
    if analysis is not None:
        if "detections" not in res:
            print("analysis: skipped (it reads COCO detections: the COCO metric only, not --metric voc)")
        else:
            from ..evaluation.analysis import run_analysis
            run_analysis(dataset, res["detections"], os.path.dirname(os.path.abspath(det_out)),
                         res.get("per_class_AP"), res.get("per_class_AP50"), **analysis)
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        out = {k: v for k, v in res.items() if k not in ("summary", "per_class_table", "samples", "detections")}
        out.update({"config": str(args.config), "weights": str(args.weights or ""), "model": str(args.model or ""), "dataset": dataset.name,
                    "detections_file": det_out})
        save_json(args.json_out, _no_nan(out))
        print(f"metrics written to {args.json_out}")
    return 0


def _analysis_settings(args, cfg):
    """``{"conf", "iou", "worst"}`` of the analysis (flags over ``test.analysis_*``), or None
    with ``--no-analysis`` / ``test.analysis=false``."""
    t = cfg.test
    if args.no_analysis or not bool(t.get("analysis", True)):
        return None
    conf = float(args.analysis_conf if args.analysis_conf is not None else t.get("analysis_conf", 0.25))
    iou = float(args.analysis_iou if args.analysis_iou is not None else t.get("analysis_iou", 0.45))
    if not 0.0 <= conf <= 1.0:
        raise ConfigError(f"--analysis-conf must be in [0, 1], got {conf}")
    if not 0.0 < iou <= 1.0:
        raise ConfigError(f"--analysis-iou must be in (0, 1], got {iou}")
    return {"conf": conf, "iou": iou, "worst": int(t.get("analysis_worst", 6))}


def _check_outputs(args, det_out, dataset, analysis=None):
    """One line, nothing written, when ``det_out``, ``--json-out`` or a file of the analysis
    would replace an input file of the evaluation or each other
    (:func:`mindyolox.runtime.outputs.check_outputs`)."""
    from ..config import find_recipe
    from ..deploy.meta import meta_path
    inputs = [args.weights, args.model, meta_path(args.model) if args.model else None, str(find_recipe(args.config)),
              args.ann, getattr(dataset, "ann_file", None), args.data]
    flag = "--det-out" if args.det_out else "--save-dir"
    outs = [(det_out, f"the detections ({flag})", flag)]
    if analysis is not None:
        from ..evaluation.analysis import analysis_files
        outs += [(p, "the analysis", flag) for p in analysis_files(os.path.dirname(os.path.abspath(det_out)), True)]
    if args.json_out:
        outs.append((args.json_out, "the metrics (--json-out)", "--json-out"))
    check_outputs(outs, inputs)


def run():
    """Console entry point (``mindyolox-test``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
