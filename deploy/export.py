"""Export a YOLOX model to MindIR (or try ONNX) for deployment.

Thin launcher of ``mindyolox.commands.export`` (installed: ``mindyolox-export``); ``--help`` says
everything.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mindyolox.commands.export import run  # noqa: E402

if __name__ == "__main__":
    run()
