"""The helper tools as package commands: ``mindyolox-tools <verb> ...`` or
``python -m mindyolox.tools.<module> ...`` (the clone's ``tools/*.py`` are thin wrappers):

    mindyolox-tools convert-weights yolox_nano.pth --config yolox-nano -o yolox_nano.ckpt
    mindyolox-tools model-info --config yolox-s
    mindyolox-tools print-config --config demo/yolox-nano-demo train.max_epoch=1
    mindyolox-tools visualize-dataset --config demo/yolox-nano-demo -o samples.png
    mindyolox-tools build-kernels --portable
"""
import sys

__all__ = ["TOOLS", "run"]

# verb -> (module in this package, one line of help)
TOOLS = {
    "build-kernels": ("build_kernels", "build the compiled CPU kernels ahead of time (--portable: no -march)"),
    "convert-weights": ("convert_weights", "official .pth/.npz weights -> a mindyolox .ckpt"),
    "model-info": ("model_info", "parameters and GFLOPs of a recipe's model"),
    "print-config": ("print_config", "a recipe fully resolved (bases, overrides) as YAML"),
    "visualize-dataset": ("visualize_dataset", "augmented training samples with their boxes, as a PNG"),
}


def _usage():
    lines = ["usage: mindyolox-tools <tool> [options]   (mindyolox-tools <tool> --help for its options)", "",
             "tools:"]
    lines += [f"  {verb:<18} {text}" for verb, (_, text) in TOOLS.items()]
    return "\n".join(lines)


def run(argv=None):
    """Console entry point (``mindyolox-tools``): dispatch ``<verb>`` (``print-config`` or
    ``print_config``) to ``mindyolox.tools.<module>.run`` with the remaining arguments."""
    import importlib
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    verb = argv[0].replace("_", "-")
    if verb not in TOOLS:
        print(f"error: unknown tool '{argv[0]}'\n{_usage()}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"{__name__}.{TOOLS[verb][0]}")
    sys.argv = [f"mindyolox-tools {verb}", *argv[1:]]
    module.run()
