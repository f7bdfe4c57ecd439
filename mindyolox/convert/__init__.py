"""Weight conversion: official YOLOX PyTorch names <-> mindyolox, torch-free .pth reading,
and ``load_weights`` for .ckpt / .pth / .pt / .npz files (see ``weights.py``)."""
from .official import mindyolox_to_official, official_to_mindyolox
from .torch_pickle import load_torch_file, read_torch_state_dict
from .weights import LoadReport, load_weights, read_weights, save_checkpoint

__all__ = ["official_to_mindyolox", "mindyolox_to_official", "load_torch_file",
           "read_torch_state_dict", "LoadReport", "load_weights", "read_weights", "save_checkpoint"]
