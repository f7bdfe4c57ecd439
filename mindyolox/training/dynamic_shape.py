"""One train-step graph for every input size: dynamic H/W (issue 35, item 6).

:func:`set_dynamic_hw` declares the step's images ``Tensor(shape=[B, 3, None, None])``
(``nn.Cell.set_inputs``) and switches the few places of the model and the loss that size
tensors from Python shape values to their shape-free forms (``dynamic_hw`` attributes,
compile-time constants: the static graphs are unchanged):

* the head's anchor grid (:func:`~mindyolox.models.head.level_grid_like`: running sums of
  ones instead of ``ops.arange(h)``, which needs a constant length);
* the loss passes no ``img_hw`` to SimOTA (the dense candidate test instead of the per-level
  factored one: the same boolean masks);
* SimOTA's top-k width is the constant 10 (``min(10, A)`` needs ``A``; A >= 21 at 32 px);
* the pairwise IoU broadcasts ``ops.minimum`` / ``ops.maximum`` instead of tiling to sizes
  read from the shapes.

Also ``ops.arange(slot.shape[0])`` in the loss reads the batch size from ``gt_boxes`` (known
when the argmax output's shape is not).

Not with the compiled CPU kernels or ``im2col`` convolutions (their shape inference needs
static H/W; ``Conv2D``'s infer fails, "input shape's h and w after padding must be greater
than or equal to kernel_size"): on CPU build the model with ``runtime.conv=native
runtime.cpu_kernels=false``. Not with the in-graph batch resize (``data.multiscale_resize:
batch``, the data-sink path): its target size is a compile-time constant; the images must
arrive at their training size. Decision: a library call, not a training option -- measured on
CPU (nano, 96/128/160 px, ``bench/compile_dynamic.py``, docs/devices.md "One graph for all
multiscale sizes"): one 34.5 s compile instead of three (86 s), per-step losses bit-identical
to the per-size graphs, steps 1.3-1.5x slower. Untested on GPU and Ascend.
"""
from mindspore import Tensor
from mindspore import dtype as mstype

__all__ = ["set_dynamic_hw", "mark_dynamic_hw"]


def mark_dynamic_hw(cell):
    """Switch every sub-cell of ``cell`` (itself included) that has a ``dynamic_hw`` attribute
    (the head, the loss wrapper, SimOTA) to its shape-free form (module doc); returns how many.
    Before the first call compiles ``cell``: a compiled graph keeps the form it was built with."""
    n = 0
    for _, sub in cell.cells_and_names():
        if hasattr(sub, "dynamic_hw"):
            sub.dynamic_hw = True
            n += 1
    return n


def set_dynamic_hw(step, batch, max_labels, image_dtype=mstype.float32):
    """Compile ``step`` (:class:`~mindyolox.training.train_step.TrainStep`) once for every
    input size: images ``[batch, 3, None, None]`` of ``image_dtype``, labels float32
    ``[batch, max_labels, 5]``; call it as ``step(images, labels)`` (no ``size``: the images
    arrive at their training size). Must run before the step's first call compiles it."""
    mark_dynamic_hw(step)
    step.set_inputs(Tensor(shape=[int(batch), 3, None, None], dtype=image_dtype),
                    Tensor(shape=[int(batch), int(max_labels), 5], dtype=mstype.float32))
    return step
