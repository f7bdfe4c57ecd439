"""Model size: parameter count and GFLOPs, reported the way official YOLOX reports them.

Official YOLOX 0.3.0 (``yolox/utils/model_utils.py: get_model_info``) profiles the model
with thop 0.1.x on one 64x64 image, multiplies thop's multiply-accumulate count by
``h * w / 64**2`` and by 2, and prints that as "GFLOPs". ``count_flops`` reproduces it:

* it runs one eval-mode PyNative forward of a zero image ``[1, 3, 64, 64]`` with forward
  hooks (no graph compilation; the context mode is restored afterwards), counting
  - ``Conv1d/2d/3d``: output elements x (input channels / groups) x kernel area, i.e. the
    multiply-accumulates; the bias add is *not* counted (thop 0.1.x ``calculate_conv2d_flops``);
  - ``BatchNorm1d/2d/3d``: 4 x input elements (thop: 2 for the normalisation, doubled for
    the affine scale and shift);
  - nearest 2x upsampling (``Upsample2x`` in the necks; ``nn.Upsample`` in the official
    code): 1 x output elements;
* and counts nothing for SiLU (thop has no rule for it), ReLU/LeakyReLU and max pooling
  (thop counts them as zero), nor for tensor adds, concatenation, slicing (Focus), the
  head's sigmoid and box decoding (functional ops thop does not see);
* ``GFLOPs = 2 * ops(64x64) * h * w / 64**2 / 1e9``. For sizes that are multiples of 32
  (every feature map scales exactly) this equals counting at ``h x w`` directly.

``count_params`` counts every Parameter except the BatchNorm moving statistics (which are
buffers, not parameters, in PyTorch), so it equals PyTorch's ``sum(p.numel() for p in
model.parameters())``.
"""
from contextlib import contextmanager

import numpy as np
import mindspore as ms
from mindspore import nn

from .batchnorm import BatchNorm2d
from .blocks import Upsample2x, bn_unfolded

PROFILE_SIZE = 64  # the official tool profiles at 64x64 and scales to the requested size

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, BatchNorm2d)


def _bn_moving_stats(model):
    """ids of the BatchNorm moving_mean / moving_variance Parameters of ``model``."""
    ids = set()
    for _, cell in model.cells_and_names():
        if isinstance(cell, _BN_TYPES):
            ids.add(id(cell.moving_mean))
            ids.add(id(cell.moving_variance))
    return ids


def count_params(model):
    """Number of parameter elements of ``model`` (weights and biases, frozen or not).

    BatchNorm moving statistics are excluded, so the result equals the PyTorch count of
    ``model.parameters()`` for the same architecture (YOLOX-s: 8,968,255).
    """
    stats = _bn_moving_stats(model)
    return int(sum(int(np.prod(p.shape)) for p in model.get_parameters() if id(p) not in stats))


def parse_img_size(img_size):
    """``640``, ``[640]`` or ``(h, w)`` -> ``(h, w)`` of positive ints; ValueError otherwise."""
    if isinstance(img_size, (int, np.integer)):
        size = (int(img_size), int(img_size))
    else:
        vals = list(img_size)
        if len(vals) == 1:
            vals = vals * 2
        if len(vals) != 2 or not all(isinstance(v, (int, np.integer)) for v in vals):
            raise ValueError(f"image size must be one int or two ints (h w), got {img_size!r}")
        size = (int(vals[0]), int(vals[1]))
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"image size must be positive, got {size[0]}x{size[1]}")
    return size


@contextmanager
def _pynative():
    """Run the enclosed code in PyNative mode (hooks need it), then restore the mode."""
    prev = ms.get_context("mode")
    if prev != ms.PYNATIVE_MODE:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        yield
    finally:
        if prev != ms.PYNATIVE_MODE:
            ms.set_context(mode=prev)


def profile_ops(model, img_size=PROFILE_SIZE):
    """thop-style operation counts of one forward of ``model`` on a ``[1, 3, h, w]`` image.

    Returns ``{"conv": MACs, "bn": ops, "upsample": ops}`` (plain ints, see the module
    docstring for the rules). Raises ValueError when the model holds a parameterised layer
    type without a counting rule, rather than silently leaving it out.
    """
    h, w = parse_img_size(img_size)
    ops = {"conv": 0, "bn": 0, "upsample": 0}

    def conv_hook(cell, args, out):
        # weight [out, in/groups, *kernel]: MACs per output element = in/groups * kernel area
        ops["conv"] += int(np.prod(out.shape)) * int(np.prod(cell.weight.shape[1:]))

    def bn_hook(cell, args, out):
        ops["bn"] += 4 * int(np.prod(args[0].shape))

    def upsample_hook(cell, args, out):
        ops["upsample"] += int(np.prod(out.shape))

    for name, cell in model.cells_and_names():
        is_leaf = not cell.name_cells()
        if is_leaf and not isinstance(cell, _CONV_TYPES + _BN_TYPES) \
                and any(True for _ in cell.get_parameters(expand=False)):
            raise ValueError(f"count_flops: no FLOP rule for layer '{name}' ({type(cell).__name__})")
    handles = []
    for _, cell in model.cells_and_names():
        if isinstance(cell, _CONV_TYPES):
            handles.append(cell.register_forward_hook(conv_hook))
        elif isinstance(cell, _BN_TYPES):
            handles.append(cell.register_forward_hook(bn_hook))
        elif isinstance(cell, Upsample2x):
            handles.append(cell.register_forward_hook(upsample_hook))

    was_training = model.training
    model.set_train(False)
    try:
        with _pynative(), bn_unfolded(model):  # eval mode would fold BN into the convs
            model(ms.Tensor(np.zeros((1, 3, h, w), np.float32)))
    finally:
        for handle in handles:
            handle.remove()
        model.set_train(was_training)
    return ops


def count_flops(model, img_size=640):
    """GFLOPs of ``model`` at ``img_size`` (int or (h, w)) as official YOLOX reports them.

    2 x thop operations at 64x64, scaled by h*w/64^2 (see the module docstring).
    YOLOX-s at 640: 26.93.
    """
    h, w = parse_img_size(img_size)
    ops = profile_ops(model, PROFILE_SIZE)
    return 2.0 * sum(ops.values()) * h * w / (PROFILE_SIZE * PROFILE_SIZE) / 1e9
