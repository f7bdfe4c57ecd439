"""Shared plumbing for the command-line scripts (train.py, test.py, tools/*.py, ...).

``run_cli(main)`` turns user errors (``MindYOLOXError``) into one ``error: <message>`` line on
stderr and exit code 2, and Ctrl-C into exit code 130, so no script shows a traceback for
bad input. Bugs (any other exception) still show their traceback.
"""
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


def add_config_args(parser):
    """Add ``--config FILE`` (required) and positional ``key=value`` overrides to ``parser``."""
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="YAML recipe, e.g. configs/yolox-s.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, value parsed as YAML, e.g. train.max_epoch=10 "
                             "data.input_size=[320,320]")
    return parser
