"""Convert official YOLOX weights (.pth/.pt, or .npz of official names) to a mindyolox .ckpt.

The body lives in the package: ``mindyolox/commands/tools/convert_weights.py`` (installed: ``mindyolox-tools convert-weights``
or ``python -m mindyolox.commands.tools convert-weights``); this wrapper runs it from a clone without installing.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install
from mindyolox.commands.tools.convert_weights import main, run  # noqa: E402,F401  (main: for callers importing this file)

if __name__ == "__main__":
    run()
