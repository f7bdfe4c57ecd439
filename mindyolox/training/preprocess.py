"""The training batch's preprocessing inside the compiled step: the official ``Exp.preprocess``.

The training pipeline (:func:`~mindyolox.data.loader.create_train_loader`) sends every batch
as it was built, uint8 ``[B, 3, H0, W0]`` BGR at the recipe's ``input_size`` (with
``data.multiscale_resize: batch``, the default) plus float32 labels ``[B, max_labels, 5]``
``(class, cx, cy, w, h)`` in input pixels. :class:`BatchPreprocess` is the first thing the step
graph does with them (:class:`~mindyolox.training.train_step.TrainStep`), on the device:

1. cast the images to float32 (0..255, no normalisation): a quarter of the bytes cross the
   host-device boundary, and the device queue holds uint8 batches (9.8 MB for yolox-s 640
   batch 8 instead of 39 MB);
2. when the step's multiscale ``size`` ``(H, W)`` differs from ``(H0, W0)``: resize the batch
   bilinearly with half-pixel centres -- ``ResizeBilinearV2(align_corners=False,
   half_pixel_centers=True)``, what ``mindspore.ops.interpolate(mode="bilinear",
   align_corners=False)`` runs (``mindspore/ops/function/nn_func.py:2716-2719``), the same
   sampling as the official ``torch.nn.functional.interpolate(inputs, size=tsize,
   mode="bilinear", align_corners=False)`` (source ``(dst + 0.5) * in / out - 0.5``, clamped
   at the borders, no antialiasing) -- and scale the labels' ``cx, w`` by ``W / W0`` and
   ``cy, h`` by ``H / H0`` (official ``targets[..., 1::2] *= scale_x``,
   ``targets[..., 2::2] *= scale_y``; zero padding rows stay zero).

``size`` is a Python tuple, so it is a compile-time constant: each multiscale size is its own
graph (MindSpore caches one graph per distinct constant argument), and the resize has static
shapes. The official trainer interpolates in its training dtype (float16 with ``--fp16``);
here it is always float32, before mixed precision casts the model's input.

Differences from the host resize this replaces (``cv2.resize`` ``INTER_LINEAR`` per uint8
sample, before batching): cv2 computes with 11-bit fixed-point weights and rounds the result
to uint8, so its images were within one grey level of the official float interpolation; the
graph's float32 interpolation is the official one (checked once against torch 2.13's
``F.interpolate`` on a random uint8 batch ``[2, 3, 96, 96]`` resized to 64, 128 and 64x128:
identical, largest difference 0.0, where the cv2 uint8 resize differed by up to 0.72 grey
levels; docs/devices.md, "One sink pipeline").
"""
from mindspore import nn, ops
from mindspore import dtype as mstype

__all__ = ["BatchPreprocess"]


class BatchPreprocess(nn.Cell):
    """``(images, labels, size) -> (images float32 [B, 3, H, W], labels float32 [B, M, 5])``.

    ``images``: any numeric dtype (uint8 from the training pipeline; float32 passes unchanged)
    ``[B, 3, H0, W0]``; ``labels`` ``[B, M, 5]`` ``(class, cx, cy, w, h)`` in pixels of
    ``(H0, W0)``; ``size``: ``(H, W)`` tuple of ints (a graph constant) or None (= no resize).
    """

    def __init__(self):
        super().__init__(auto_prefix=False)
        self.resize = ops.ResizeBilinearV2(align_corners=False, half_pixel_centers=True)

    def construct(self, images, labels, size=None):
        images = images.astype(mstype.float32)
        if size is None:
            return images, labels
        h0, w0 = images.shape[2], images.shape[3]
        if size[0] == h0 and size[1] == w0:
            return images, labels
        images = self.resize(images, (size[0], size[1]))
        sx, sy = size[1] / w0, size[0] / h0
        scale = ops.stack((ops.ones((), mstype.float32), ops.scalar_to_tensor(sx, mstype.float32),
                           ops.scalar_to_tensor(sy, mstype.float32), ops.scalar_to_tensor(sx, mstype.float32),
                           ops.scalar_to_tensor(sy, mstype.float32)))
        return images, labels * scale.astype(labels.dtype)
