"""Shared plumbing for the command-line scripts (train.py, test.py, tools/*.py, ...).

``run_cli(main)`` turns user errors (``MindYOLOXError``) into one ``error: <message>`` line on
stderr and exit code 2, and Ctrl-C into exit code 130, so no script shows a traceback for
bad input. Bugs (any other exception) still show their traceback.

``parse_args(parser, argv)`` lets ``key=value`` overrides and options mix in any order:
every word of the form ``section.key=value`` (a dotted name, then ``=``) is an override
wherever it stands, even right after an option that takes several values (``--img-size``).
"""
import re
import sys

from ..errors import MindYOLOXError


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


def add_config_args(parser, example="data.data_dir=my_coco"):
    """Add ``--config FILE`` (required) and ``key=value`` overrides to ``parser``; ``example``
    is the override shown in ``--help`` (one that means something for that script)."""
    parser.add_argument("--config", required=True, metavar="FILE",
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
