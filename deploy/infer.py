"""Run an exported YOLOX model (.onnx, .mindir, .om) on images, folders, videos, a webcam or a stream.

Thin launcher of ``mindyolox.commands.infer`` (installed: ``mindyolox-infer``); ``--help`` says
everything.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mindyolox.commands.infer import run  # noqa: E402

if __name__ == "__main__":
    run()
