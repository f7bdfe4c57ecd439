"""Print a recipe's model size: parameter count and GFLOPs (as official YOLOX reports them).

The body lives in the package: ``mindyolox/commands/tools/model_info.py`` (installed: ``mindyolox-tools model-info``
or ``python -m mindyolox.commands.tools model-info``); this wrapper runs it from a clone without installing.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install
from mindyolox.commands.tools.model_info import main, run  # noqa: E402,F401  (main: for callers importing this file)

if __name__ == "__main__":
    run()
