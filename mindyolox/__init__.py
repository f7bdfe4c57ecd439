"""mindyolox: YOLOX object detection on MindSpore, numerically the official YOLOX 0.3.0."""
__version__ = "0.1.0"

from .config import load_config  # noqa: E402
from .convert.weights import load_weights  # noqa: E402
from .models import build_model  # noqa: E402
from .options import DeviceOptions, resolve_options  # noqa: E402

__all__ = ["build_model", "load_config", "load_weights", "DeviceOptions", "resolve_options", "__version__"]
