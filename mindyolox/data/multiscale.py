"""The multiscale rule of training, in one place (asked by the loader, the feeder, the
trainer and the compile-cache key).

One input size per block of :data:`INTERVAL` global steps (official YOLOX: a new random size
every 10 iterations), the same on every rank (it depends on the global step only): the height
is ``32 * randint(lo, hi)`` drawn from ``np.random.default_rng([seed, 0x5CA1E, block])``
(``lo, hi`` = ``data.random_size`` or ``input_size/32 -+ data.multiscale_range``), the width
keeps the recipe's aspect ratio; block 0 uses ``input_size`` as the official trainer does.
"""
import numpy as np

from ..errors import DataError

__all__ = ["INTERVAL", "multiscale_range", "is_multiscale", "size_for_step", "steps_to_change"]

INTERVAL = 10  # global steps per input size (official: the size changes every 10 iterations)


def multiscale_range(data_cfg):
    """``(lo, hi)`` size factors (x32, inclusive) of multiscale training, or ``None`` when off."""
    rs = list(data_cfg.get("random_size") or [])
    if rs:
        if len(rs) != 2 or int(rs[0]) > int(rs[1]) or int(rs[0]) < 1:
            raise DataError(f"data.random_size must be [min, max] with 1 <= min <= max, got {rs}")
        return int(rs[0]), int(rs[1])
    m = int(data_cfg.get("multiscale_range", 0))
    if m <= 0:
        return None
    base = int(data_cfg["input_size"][0] / 32)
    if base - m < 1:
        raise DataError(f"data.multiscale_range={m} too large for input_size {data_cfg['input_size']}")
    return base - m, base + m


def is_multiscale(data_cfg):
    """Whether a recipe's ``data`` section trains at more than one input size."""
    return multiscale_range(data_cfg) is not None


def size_for_step(step, input_size, ms_range, seed, interval=INTERVAL):
    """Input ``(H, W)`` of global training step ``step`` (module doc)."""
    block = int(step) // int(interval)
    if ms_range is None or block == 0:
        return int(input_size[0]), int(input_size[1])
    factor = input_size[1] / input_size[0]
    s = int(np.random.default_rng([int(seed), 0x5CA1E, block]).integers(ms_range[0], ms_range[1] + 1))
    return 32 * s, 32 * int(s * factor)


def steps_to_change(step, interval=INTERVAL):
    """Steps from global step ``step`` (included) to the next size change (>= 1)."""
    return int(interval) - int(step) % int(interval)
