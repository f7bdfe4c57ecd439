"""Track objects through a video, a folder of frames, a webcam or a stream (YOLOX + ByteTrack).

Thin launcher of ``mindyolox.commands.track`` (installed: ``mindyolox-track``); ``--help`` says
everything.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from a clone without installing

from mindyolox.commands.track import run  # noqa: E402

if __name__ == "__main__":
    run()
