"""Mixed precision: the network to train or run for an ``amp_level``.

MindSpore's meaning of the levels is kept. Two things MindSpore's own functions cannot do on
these cells are done here: its O1 rewrites the Python source of every cell through
``mindspore.rewrite`` (which fails on ``Conv2d.convolve``), and its O2 black list knows only
``nn.BatchNorm*``, wrapping each in a cell that renames the parameter paths (so checkpoints
and official weights would no longer match). Instead the project's layers carry a
``cast_output`` and the levels are applied with MindSpore's ``to_float``:

``O0``  the model itself, float32.
``O1``  every convolution (:class:`~mindyolox.models.conv.Conv2d`, all of the model's convs,
        head predictions included) computes in float16 (``to_float``) and casts its output back
        to float32; BatchNorm, activations and the head's concat/decode stay float32
        (MindSpore's white-list O1).
``O2``  ``mindspore.amp.custom_mixed_precision(model, black_list=get_black_list())`` (the whole
        model in float16, outputs cast to float32) with the project's
        :class:`~mindyolox.models.batchnorm.BatchNorm2d` kept as a float32 cell whose output is
        cast back to float16, as MindSpore does for ``nn.BatchNorm2d``.
``O3``  ``mindspore.amp.auto_mixed_precision(model, "O3")``: everything float16, BatchNorm
        included; outputs cast to float32.

At O2 and O3 the head's eval-mode box decode (:class:`~mindyolox.models.head.BoxDecode`)
stays a float32 cell: decoded boxes are the float32 decode of the float16 network's raw
outputs (``--half``).

In every level the parameters stay float32 Parameters (``to_float`` inserts casts where they
are used), so SGD updates float32 master weights, the EMA model is a float32 copy and
checkpoints hold float32 under the official names; the loss (SimOTA and the loss terms) runs
outside the returned network on its float32 outputs.
"""
import mindspore as ms
from mindspore import dtype as mstype

from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .head import BoxDecode

__all__ = ["mixed_precision"]


def mixed_precision(model, level):
    """The network to call for ``level`` (``O0``..``O3``, see the module doc): a Cell with
    float32 outputs calling ``model``, whose parameters and names stay as they are.
    ``model``'s layers get their precision flags in place: build a fresh model per level."""
    if level == "O0":
        return model
    if level not in ("O1", "O2", "O3"):
        raise ValueError(f"amp level must be O0, O1, O2 or O3, got {level!r}")
    for _, cell in model.cells_and_names():
        if isinstance(cell, Conv2d):
            cell.compute_dtype = mstype.float16
    if level == "O1":
        for _, cell in model.cells_and_names():
            if isinstance(cell, Conv2d):
                cell.to_float(mstype.float16)
                cell.cast_output = mstype.float32
        return model
    if level == "O2":
        net = ms.amp.custom_mixed_precision(model, black_list=ms.amp.get_black_list())
        for _, cell in model.cells_and_names():
            if isinstance(cell, BatchNorm2d):
                cell.to_float(mstype.float32)
                cell.cast_output = mstype.float16
    else:
        net = ms.amp.auto_mixed_precision(model, "O3")
    for _, cell in model.cells_and_names():  # the eval box decode stays float32 (--half)
        if isinstance(cell, BoxDecode):
            cell.to_float(mstype.float32)
    net.num_classes = model.num_classes  # for evaluators (the wrapper hides model.head)
    return net
