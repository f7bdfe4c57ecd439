"""Draw augmented training samples (what the model is fed) with their boxes and class names.

The body lives in the package: ``mindyolox/commands/tools/visualize_dataset.py`` (installed: ``mindyolox-tools visualize-dataset``
or ``python -m mindyolox.commands.tools visualize-dataset``); this wrapper runs it from a clone without installing.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install
from mindyolox.commands.tools.visualize_dataset import main, run  # noqa: E402,F401  (main: for callers importing this file)

if __name__ == "__main__":
    run()
