"""Train a YOLOX model (official YOLOX 0.3.0 recipe) on one device or many.

    python train.py --config configs/yolox-s.yaml [key=value ...]
    python train.py --config configs/yolox-s.yaml --resume              # continue runs/train/yolox-s
    python train.py --config configs/yolox-s.yaml --weights yolox_s.pth data.data_dir=my_coco model.num_classes=3
    python train.py --config yolox-nano --data my_data.yaml --weights yolox_nano   # a YOLO-format dataset YAML
    msrun --worker_num=8 --local_worker_num=8 train.py --config configs/yolox-s.yaml --distributed

Outputs go to ``<train.output_dir>/<name>`` (name: the recipe's file name unless --name):
checkpoints (last/best/epoch_N.ckpt), metrics.jsonl, train_log.txt, curves.png.
Exit codes: 0 done (or stopped by a ``STOP`` file in the run folder, last.ckpt saved), 2 bad input,
diverged, or stalled by float16 overflow (``train.overflow_stop_steps`` skipped steps in a row;
last.ckpt saved) (message on stderr), 130/143 interrupted by SIGINT/SIGTERM after saving last.ckpt
(under msrun: every rank, whichever one received the signal).
"""
import argparse
from pathlib import Path

from ..convert.download import resolve_weights
from ._args import add_config_args, load_data_config, parse_args as parse_cli, run_cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train YOLOX (MindSpore, graph mode).")
    add_config_args(p, example="train.max_epoch=10 data.input_size=[320,320]")
    p.add_argument("--data", metavar="YAML", help="a YOLO-format dataset YAML (ultralytics: path, train, val, names): "
                                                  "data.format=yolo, the classes and model.num_classes from it")
    p.add_argument("--name", help="run name (default: the recipe file name)")
    p.add_argument("--run-dir", help="output folder (default: <train.output_dir>/<name>)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue the run from its last.ckpt (or from CKPT)")
    p.add_argument("--exist-ok", action="store_true", help="write into an existing run directory")
    p.add_argument("--weights", help="fine-tune from .ckpt/.pth/.npz weights or an official name such as yolox_s")
    p.add_argument("--distributed", action="store_true", help="data parallel over the msrun workers")
    p.add_argument("--data-sink", action="store_true", help="data sink mode (Ascend/GPU)")
    p.add_argument("--device", default=None, help="CPU | GPU | Ascend (default: MindSpore's)")
    p.add_argument("--workers", type=int, default=None, help="data workers (default data.num_workers)")
    p.add_argument("--max-iters", type=int, default=None, help="stop after N iterations (schedule unchanged)")
    p.add_argument("--no-eval", action="store_true", help="skip the periodic evaluation")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--compile-cache", default="auto", metavar="auto|off|DIR",
                   help="MindSpore on-disk graph cache for a faster start of later runs: auto (default; "
                        "~/.cache/mindyolox/compile/recipe-<key of code, recipe, device>, fixed-size recipes only), "
                        "off, or a folder (a keyed subfolder of it)")
    p.add_argument("--precompile", action="store_true",
                   help="compile the train step of every multiscale size (and the EMA / eval graphs) before "
                        "the first step, one line per graph, so that the steps time evenly")
    return parse_cli(p, argv)


def main(argv=None):
    args = parse_args(argv)
    args.weights = resolve_weights(args.weights)
    from ..runtime.context import setup_mindspore
    from ..training.trainer import Trainer
    from ..errors import MindYOLOXError

    if args.max_iters is not None and args.max_iters <= 0:
        raise MindYOLOXError(f"--max-iters must be positive, got {args.max_iters}")
    if args.workers is not None and args.workers < 0:
        raise MindYOLOXError(f"--workers must be >= 0, got {args.workers}")
    cfg = load_data_config(args.config, args.data, args.overrides)
    setup_mindspore(args.device, cfg)
    from ..options import resolve_options
    options = resolve_options(cfg)
    name = args.name or Path(args.config).stem
    trainer = Trainer(cfg, options, run_dir=args.run_dir, name=name, resume=args.resume, exist_ok=args.exist_ok,
                      weights=args.weights, distributed=args.distributed, data_sink=args.data_sink,
                      num_workers=args.workers, max_iters=args.max_iters, evaluate=not args.no_eval,
                      progress=not args.no_progress, compile_cache=args.compile_cache,
                      precompile=args.precompile)
    status = trainer.train()
    if status == "interrupted":  # a STOP file is the user's orderly stop: 0 (every rank alike)
        return 0 if trainer.stop_signal is None else 128 + int(trainer.stop_signal)
    return 0


def run():
    """Console entry point (``mindyolox-train``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
