"""Evaluate a YOLOX model: COCO bbox AP (official evaluator) or Pascal VOC mAP.

Thin launcher of ``mindyolox.commands.evaluate`` (installed: ``mindyolox-test``); ``--help`` says
everything.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from a clone without installing

from mindyolox.commands.evaluate import run  # noqa: E402

if __name__ == "__main__":
    run()
