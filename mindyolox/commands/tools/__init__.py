"""The helper tools behind one verb dispatcher: ``mindyolox-tools <verb> ...`` (installed),
``python -m mindyolox.commands.tools <verb> ...`` (the same, from a clone or installed); the
clone's ``tools/*.py`` are one-line launchers of the same modules:

    mindyolox-tools convert-weights yolox_nano.pth --config yolox-nano -o yolox_nano.ckpt
    mindyolox-tools model-info --config yolox-s
    mindyolox-tools print-config --config demo/yolox-nano-demo train.max_epoch=1
    mindyolox-tools visualize-dataset --config demo/yolox-nano-demo -o samples.png
    mindyolox-tools demo-data --out datasets/shapes --train 200 --val 50
    mindyolox-tools convert --from coco --to yolo annotations/instances_train.json out/my_yolo
    mindyolox-tools split out/my_yolo/data.yaml out/my_split --format yolo --ratios 0.8 0.2 --seed 0
    mindyolox-tools dataset-report out/my_yolo/data.yaml --format yolo -o out/report
    mindyolox-tools make-track-demo datasets/track-demo
    mindyolox-tools track-eval --gt datasets/track-demo/gt/gt.txt --pred runs/track/track-demo.txt
    mindyolox-tools build-kernels --portable
    mindyolox-tools cache --prune 2

A new tool is one module with ``run()`` (which calls ``run_cli(main)``) and one row of
:data:`TOOLS`. Decided: the old ``python -m mindyolox.tools[.<module>]`` is gone (one front
door per program: the console script, the clone's launcher, or this package).
"""
import importlib
import sys

__all__ = ["TOOLS", "run"]

# verb -> (module under mindyolox.commands with a run(), one line of help)
TOOLS = {
    "convert-weights": ("tools.convert_weights", "official .pth/.npz weights -> a mindyolox .ckpt"),
    "model-info": ("tools.model_info", "parameters and GFLOPs of a recipe's model"),
    "print-config": ("tools.print_config", "a recipe fully resolved (bases, overrides) as YAML"),
    "visualize-dataset": ("tools.visualize_dataset", "augmented training samples with their boxes, as a PNG"),
    "demo-data": ("demo", "generate the synthetic shapes demo dataset (COCO format)"),
    "convert": ("tools.convert_data", "convert a dataset between COCO JSON, Pascal VOC and YOLO txt"),
    "split": ("tools.split_data", "split a dataset into train/val(/test), stratified by class, with a seed"),
    "dataset-report": ("tools.dataset_report", "a dataset's statistics as text, a PNG and a JSON"),
    "make-track-demo": ("tools.make_track_demo", "write the synthetic tracking sequence (MOTChallenge layout)"),
    "track-eval": ("tools.track_eval", "MOTA, IDF1, HOTA of MOTChallenge tracks against the ground truth"),
    "build-kernels": ("tools.build_kernels", "build the compiled CPU kernels ahead of time (--portable: no -march)"),
    "cache": ("tools.cache", "show the compile cache and kernel libraries (sizes, entries); --prune N keeps the N newest"),
}


def _usage():
    lines = ["usage: mindyolox-tools <tool> [options]   (mindyolox-tools <tool> --help for its options)", "",
             "tools:"]
    lines += [f"  {verb:<18} {text}" for verb, (_, text) in TOOLS.items()]
    return "\n".join(lines)


def run(argv=None):
    """Console entry point (``mindyolox-tools``): dispatch ``<verb>`` (``print-config`` or
    ``print_config``) to ``mindyolox.commands.<module>.run`` with the remaining arguments;
    no verb: the list on stderr, exit 2; ``-h``: the list on stdout, exit 0; an unknown verb:
    ``error: unknown tool``, exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    verb = argv[0].replace("_", "-")
    if verb not in TOOLS:
        print(f"error: unknown tool '{argv[0]}'\n{_usage()}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"mindyolox.commands.{TOOLS[verb][0]}")
    sys.argv = [f"mindyolox-tools {verb}", *argv[1:]]
    module.run()
