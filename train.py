"""Train a YOLOX model (official YOLOX 0.3.0 recipe) on one device or many.

Thin launcher of ``mindyolox.commands.train`` (installed: ``mindyolox-train``); ``--help`` says
everything.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from a clone without installing

from mindyolox.commands.train import run  # noqa: E402

if __name__ == "__main__":
    run()
