"""Read PyTorch ``.pth`` checkpoints into numpy arrays without PyTorch.

``torch.save`` (torch >= 1.6) writes a zip archive ``<archive>/data.pkl`` (the pickled
object, tensors referring to storages by persistent id ``('storage', type, key, location,
numel)``), ``<archive>/data/<key>`` (raw storage bytes) and ``<archive>/byteorder``
(``little``/``big``; absent means little). The unpickler here is restricted: it rebuilds
tensors, storages, ``OrderedDict`` and numpy scalars and refuses every other global, so a
malicious file cannot execute code. Tensors become numpy arrays (strides and storage
offsets honoured, copied into contiguous native-endian arrays; bfloat16 is upcast to
float32). The legacy pre-1.6 (non-zip) format is refused with a hint to re-save it.
"""
import collections
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ..errors import WeightsError

# storage class name -> numpy dtype of its elements (bfloat16 read as raw uint16).
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128, "UntypedStorage": np.uint8,
}
# checkpoint keys that may hold the state dict, tried in this order.
CHECKPOINT_KEYS = ("model", "state_dict", "ema")


class _StorageType:
    """Stand-in for ``torch.<X>Storage`` classes: only carries the element dtype."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage read from the archive: a flat array plus whether it holds bfloat16 bits."""

    def __init__(self, array, bfloat16):
        self.array = array
        self.bfloat16 = bfloat16


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused):
    """Equivalent of ``torch._utils._rebuild_tensor(_v2)``: a strided view, copied."""
    flat = storage.array
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise ValueError(f"tensor size {size} and stride {stride} differ in rank")
    if 0 in size:
        out = np.empty(size, dtype=flat.dtype)
    else:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if storage_offset < 0 or min(stride, default=0) < 0 or last >= flat.size:
            raise ValueError(f"tensor of size {size} stride {stride} offset {storage_offset} "
                             f"exceeds its storage of {flat.size} elements")
        base = flat[storage_offset:]
        view = np.lib.stride_tricks.as_strided(
            base, shape=size, strides=tuple(s * flat.itemsize for s in stride), writeable=False)
        out = np.array(view, dtype=flat.dtype.newbyteorder("="), order="C", copy=True)
    if storage.bfloat16:
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def _rebuild_parameter(data, *_unused):
    """Equivalent of ``torch._utils._rebuild_parameter(_with_state)``: the plain array."""
    return data


_TORCH_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


def _numpy_scalar(dtype, data=None):
    """Rebuild a pickled numpy scalar (e.g. ``best_ap``) from its dtype and raw bytes."""
    if not isinstance(dtype, np.dtype) or not isinstance(data, bytes):
        raise ValueError("malformed numpy scalar")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_dtype(name, *_flags):
    return np.dtype(name)


def _codecs_encode(text, encoding="utf-8"):
    """``_codecs.encode``, used by protocol-2 pickles for bytes; strings only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8"):
        raise ValueError("malformed bytes object")
    return text.encode(encoding)


_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("_codecs", "encode"): _codecs_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for ``data.pkl`` that resolves only tensor-related globals."""

    def __init__(self, file, archive, prefix, byteorder, source):
        super().__init__(file)
        self._archive, self._prefix, self._source = archive, prefix, source
        self._byteorder = "<" if byteorder == "little" else ">"
        self._storages = {}

    def find_class(self, module, name):
        key = (module, name)
        if key in _TORCH_FUNCTIONS:
            return _TORCH_FUNCTIONS[key]
        if key in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[key]
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsError(
            f"{self._source}: refusing to unpickle '{module}.{name}' (only tensors and plain "
            "containers are allowed; save model.state_dict() rather than a whole object)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise WeightsError(f"{self._source}: unsupported persistent id {pid!r:.80}")
        _, stype, key, _location, numel = pid
        if key not in self._storages:
            member = f"{self._prefix}data/{key}"
            try:
                raw = self._archive.read(member)
            except KeyError:
                raise WeightsError(f"{self._source}: storage '{member}' is missing from the archive") from None
            dtype = stype.dtype.newbyteorder(self._byteorder) if stype.dtype.itemsize > 1 else stype.dtype
            count = len(raw) // dtype.itemsize
            if count < int(numel):
                raise WeightsError(f"{self._source}: storage '{member}' holds {count} elements, "
                                   f"expected {numel}")
            array = np.frombuffer(raw, dtype=dtype, count=int(numel))
            self._storages[key] = _Storage(array, stype.name == "BFloat16Storage")
        return self._storages[key]


def load_torch_file(path):
    """Unpickle a ``torch.save`` zip file; tensors come back as numpy arrays.

    Returns the saved object (dicts, lists, numbers, arrays). Raises ``WeightsError`` with
    one line naming ``path`` for a missing, non-PyTorch, legacy or unsafe file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":
            raise WeightsError(f"{path}: legacy (pre-1.6, non-zip) PyTorch format is not supported; "
                               "re-save it with torch>=1.6: torch.save(torch.load(f), f)")
        raise WeightsError(f"{path}: not a PyTorch checkpoint (expected a torch.save zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            pkls = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
            if len(pkls) != 1:
                raise WeightsError(f"{path}: not a PyTorch checkpoint (no <archive>/data.pkl inside)")
            prefix = pkls[0][: -len("data.pkl")]
            byteorder = "little"
            if f"{prefix}byteorder" in archive.namelist():
                byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
                if byteorder not in ("little", "big"):
                    raise WeightsError(f"{path}: unknown byteorder '{byteorder}'")
            with archive.open(pkls[0]) as f:
                return _RestrictedUnpickler(f, archive, prefix, byteorder, path).load()
    except WeightsError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, ValueError, TypeError, EOFError,
            AttributeError, IndexError, KeyError) as e:
        raise WeightsError(f"{path}: corrupt PyTorch checkpoint ({type(e).__name__}: {e})") from None


def extract_state_dict(obj, source="checkpoint"):
    """Find the state dict in a loaded checkpoint and return ``{name: array}``.

    Accepts ``{"model": sd}``, ``{"state_dict": sd}``, ``{"ema": sd}`` (tried in that order;
    official YOLOX checkpoints use ``model``, which holds the EMA weights when EMA was on)
    or a bare state dict. A leading ``module.`` (DistributedDataParallel) is stripped.
    """
    sd = obj
    if isinstance(obj, dict):
        for key in CHECKPOINT_KEYS:
            if isinstance(obj.get(key), dict):
                sd = obj[key]
                break
    if not isinstance(sd, dict) or not sd:
        raise WeightsError(f"{source}: no state dict found (expected a dict of tensors, or one "
                           f"under {', '.join(repr(k) for k in CHECKPOINT_KEYS)})")
    bad = [str(k) for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise WeightsError(f"{source}: state dict has {len(bad)} non-tensor entries "
                           f"(e.g. {', '.join(bad[:3])}); keys: {', '.join(map(str, list(obj)[:8]))}")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def read_torch_state_dict(path):
    """``{official name: numpy array}`` from a PyTorch ``.pth``/``.pt`` checkpoint, torch-free."""
    return extract_state_dict(load_torch_file(path), source=str(path))
