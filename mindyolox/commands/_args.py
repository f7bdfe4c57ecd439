"""Shared argument plumbing of the command-line programs (:mod:`mindyolox.commands`).

``run_cli(main)`` turns user errors (``MindYOLOXError``) into one ``error: <message>`` line on
stderr and exit code 2, and Ctrl-C into exit code 130, so no script shows a traceback for
bad input. Bugs (any other exception) still show their traceback.

``parse_args(parser, argv)`` lets ``key=value`` overrides and options mix in any order:
every word of the form ``section.key=value`` (a dotted name, then ``=``) is an override
wherever it stands, even right after an option that takes several values (``--img-size``).

``parse_img_size(values)`` reads ``--img-size S`` / ``--img-size H W`` (and a recipe's
``data.test_size``); ``add_predict_args`` / ``check_thresholds`` are the options ``predict``
and ``infer`` share.
"""
import re
import sys

from ..errors import ConfigError, MindYOLOXError

__all__ = ["run_cli", "add_config_args", "parse_args", "parse_img_size", "add_predict_args", "check_thresholds",
           "load_data_config"]


def run_cli(main):
    """Call ``main()`` and exit: its return value (None -> 0), 2 on ``MindYOLOXError``, 130 on Ctrl-C."""
    try:
        code = main()
    except MindYOLOXError as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.\w+)+=")


def add_config_args(parser, example="data.data_dir=my_coco", required=True):
    """Add ``--config FILE`` (``required`` unless the command checks it itself) and ``key=value``
    overrides to ``parser``; ``example`` is the override shown in ``--help`` (one that means
    something for that script)."""
    parser.add_argument("--config", required=required, metavar="FILE",
                        help="YAML recipe: a file, or a shipped recipe by name such as yolox-s, "
                             "demo/yolox-nano-demo, custom/yolox-nano-cpu (from any folder)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help=f"dotted overrides anywhere on the line, value parsed as YAML, e.g. {example}")
    return parser


def parse_args(parser, argv=None):
    """``parser.parse_args`` with every ``section.key=value`` word taken out first and put in
    ``args.overrides`` (in the order given), so overrides and options mix in any order."""
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if OVERRIDE.match(a)]
    args = parser.parse_args([a for a in argv if not OVERRIDE.match(a)])
    args.overrides = list(getattr(args, "overrides", None) or []) + overrides
    return args


def load_data_config(config, data_yaml, overrides):
    """The recipe ``config`` with ``overrides``; with ``--data`` (``data_yaml``, a YOLO dataset
    YAML) first the overrides that read it (``data.format=yolo``, ``data.yaml``, the classes and
    ``model.num_classes``: :func:`mindyolox.data.yolo.dataset_yaml_overrides`), so an explicit
    ``key=value`` still wins. Prints one line when the YAML changes the recipe's
    ``model.num_classes``."""
    from ..config import load_config
    if not data_yaml:
        return load_config(config, overrides)
    from ..data.yolo import dataset_yaml_overrides
    extra, names = dataset_yaml_overrides(data_yaml)
    recipe_n = int(load_config(config, overrides).model.num_classes)
    cfg = load_config(config, extra + list(overrides))
    if int(cfg.model.num_classes) == len(names) != recipe_n:
        print(f"model.num_classes={len(names)} from {data_yaml} (the recipe says {recipe_n})", flush=True)
    return cfg


def parse_img_size(values, flag="--img-size", multiple=32):
    """``[S]`` or ``[H, W]`` (strings or ints) -> ``(H, W)`` positive ints (pixels), each a
    multiple of ``multiple`` (the largest stride: the neck's up/down-sampled maps must align)."""
    try:
        v = [int(x) for x in values]
    except (TypeError, ValueError):
        raise MindYOLOXError(f"{flag}: expected one int or two ints (h w), got {values}") from None
    if len(v) == 1:
        v = v * 2
    if len(v) != 2 or min(v) <= 0:
        raise MindYOLOXError(f"{flag}: expected one positive int or two (h w), got {values}")
    if multiple and (v[0] % multiple or v[1] % multiple):
        raise MindYOLOXError(f"{flag}: {v[0]}x{v[1]} is not a multiple of {multiple} "
                             f"(e.g. {max(multiple, round(v[0] / multiple) * multiple)})")
    return v[0], v[1]


def add_predict_args(parser, save_dir="runs/predict", source_help="image, video, folder, webcam index (0) or "
                                                                  "stream URL (rtsp://, http://)"):
    """Options shared by ``predict`` and ``infer`` (``save_dir``: the default output folder)."""
    parser.add_argument("--source", required=True, help=source_help)
    parser.add_argument("--conf", type=float, default=0.25, help="score threshold obj*cls (default 0.25)")
    parser.add_argument("--nms", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    parser.add_argument("--class-agnostic", action="store_true", help="NMS over all classes together")
    parser.add_argument("--max-frames", type=int, default=0,
                        help="stop a video/webcam/stream after N frames (0: all)")
    parser.add_argument("--save-dir", default=save_dir, help=f"output folder (default {save_dir})")
    parser.add_argument("--no-save", action="store_true", help="write nothing, print detections only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--save-txt", action="store_true",
                        help="also YOLO txt labels: labels/<stem>.txt per image, labels/<stem>_<frame>.txt per "
                             "video frame (class cx cy w h score, normalised)")
    parser.add_argument("--save-coco", action="store_true",
                        help="also predictions_coco.json: COCO results (image_id from digit file names, else the "
                             "position; COCO category ids for an 80-class COCO model)")
    return parser


def check_thresholds(args):
    """``--conf`` and ``--nms`` in [0, 1], ``--max-frames`` >= 0 (one ConfigError line)."""
    for name in ("conf", "nms"):
        v = getattr(args, name)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"--{name} must be in [0, 1], got {v}")
    if args.max_frames < 0:
        raise ConfigError(f"--max-frames must be >= 0, got {args.max_frames}")
