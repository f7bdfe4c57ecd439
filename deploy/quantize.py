"""INT8 static post-training quantization of an exported ONNX model (onnxruntime), calibrated
through the project's own loader. Thin launcher of ``mindyolox.commands.quantize``; ``--help``
says everything."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mindyolox.commands.quantize import run  # noqa: E402

if __name__ == "__main__":
    run()
