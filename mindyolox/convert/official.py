"""Official YOLOX (PyTorch) parameter names <-> mindyolox parameter names.

Module paths are identical; only BatchNorm names differ:
``weight/bias/running_mean/running_var`` -> ``gamma/beta/moving_mean/moving_variance``.
``num_batches_tracked`` is a PyTorch bookkeeping counter with no MindSpore counterpart
(momentum is fixed, so it never affects the numbers) and is ignored.
"""
_BN_SUFFIX = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
              "running_var": "moving_variance"}
_BN_SUFFIX_BACK = {v: k for k, v in _BN_SUFFIX.items()}
IGNORED_SUFFIXES = ("num_batches_tracked",)


def _is_bn(prefix):
    return prefix.endswith(".bn") or prefix == "bn"


def official_to_mindyolox(name):
    """Map one official name to ours; None for ignored buffers (num_batches_tracked)."""
    prefix, _, leaf = name.rpartition(".")
    if leaf in IGNORED_SUFFIXES:
        return None
    if _is_bn(prefix) and leaf in _BN_SUFFIX:
        return f"{prefix}.{_BN_SUFFIX[leaf]}"
    return name


def mindyolox_to_official(name):
    """Map one of our parameter names back to the official PyTorch name."""
    prefix, _, leaf = name.rpartition(".")
    if _is_bn(prefix) and leaf in _BN_SUFFIX_BACK:
        return f"{prefix}.{_BN_SUFFIX_BACK[leaf]}"
    return name

