"""mindyolox: YOLOX object detection on MindSpore, numerically the official YOLOX 0.3.0."""
import os

__version__ = "0.1.0"

# MindSpore's C++ log at ERROR unless the user chose a level: its graph-compile warnings
# ("Some side effect nodes were eliminated by mistake", ...) are noise for a user and land on
# the progress bars. GLOG_v=2 shows them again (docs/troubleshooting.md). Read by MindSpore
# when it is first imported, hence before the imports below.
os.environ.setdefault("GLOG_v", "3")

from .config import load_config  # noqa: E402
from .convert.weights import load_weights  # noqa: E402
from .models import build_model  # noqa: E402
from .options import DeviceOptions, resolve_options  # noqa: E402

__all__ = ["build_model", "load_config", "load_weights", "DeviceOptions", "resolve_options", "__version__"]
