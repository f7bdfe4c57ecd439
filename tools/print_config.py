"""Print a recipe fully resolved (bases merged, overrides applied, validated) as YAML.

The body lives in the package: ``mindyolox/commands/tools/print_config.py`` (installed: ``mindyolox-tools print-config``
or ``python -m mindyolox.commands.tools print-config``); this wrapper runs it from a clone without installing.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install
from mindyolox.commands.tools.print_config import main, run  # noqa: E402,F401  (main: for callers importing this file)

if __name__ == "__main__":
    run()
