"""Detect objects in an image, a folder of images/videos or a video with a YOLOX model.

Thin launcher of ``mindyolox.commands.predict`` (installed: ``mindyolox-predict``); ``--help`` says
everything.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from a clone without installing

from mindyolox.commands.predict import run  # noqa: E402

if __name__ == "__main__":
    run()
