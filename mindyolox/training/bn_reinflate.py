"""Re-inflate folded BatchNorm layers before fine-tuning (project issue 33, case 6).

A checkpoint recovered from an exported graph (ONNX folds every BatchNorm into its
convolution) has, in each BN, ``gamma = 1``, ``beta = b`` (the folded bias), running mean
0 and running variance ``1 - eps`` (:func:`~mindyolox.models.batchnorm.looks_folded`).
In eval mode that is exact: ``(x - 0) / sqrt(1 - eps + eps) * 1 + b = x + b``. In train mode
BN normalises with the batch's own statistics instead, ``(x - mean_B) / sqrt(var_B + eps) + b``:
every layer's output loses its scale and offset, and one epoch of fine-tuning at a learning
rate of ~0 takes nano on coco128 from AP 29.6 to 0.0 (issue 33; measured at 416: 33.3 to
0.00; the running statistics follow the
batches).

Re-inflation gives each such layer statistics without changing its eval-mode function.
A BN in eval mode computes ``x * s + beta`` per channel with ``s = gamma / sqrt(var + eps)``
(``s = 1`` when folded; a nonzero running mean ``m`` is moved into ``beta - s * m``). With
``mu``, ``sigma2`` the per-channel mean and variance of the
layer's input ``x`` (the convolution's output) on calibration images, set

    moving_mean = mu, moving_variance = sigma2,
    gamma = s * sqrt(sigma2 + eps), beta = beta + s * mu

Eval mode then computes ``(x - mu) / sqrt(sigma2 + eps) * s * sqrt(sigma2 + eps) + beta + s * mu
= x * s + beta``, the checkpoint's function exactly (to float rounding), and train mode with
batch statistics close to ``(mu, sigma2)`` computes close to it, so fine-tuning starts from
the checkpoint's function.

Weight scale (decision, measured): the folded convolution weights carry the lost BN scale,
``W = w * gamma_0 / sqrt(var_0 + eps)``, and a BN-normalised conv's effective step under SGD goes
as ``lr / |W|^2`` (its output is invariant to the scale of ``W``, its gradient is not). So the
re-inflated network learns with per-channel step sizes set by the original statistics, not by
the recipe: with the statistics above alone, one epoch of nano on coco128 at 320 (lr 8e-5,
a sixteenth of the recipe's) fell from AP 29.6 to 2.1. Each output channel of the conv feeding
a re-inflated BN is therefore rescaled to weight norm :data:`WEIGHT_NORM` (1.0): ``W' = W / c``,
``c = |W_c| / 1.0``, its statistics become ``mu / c``, ``sigma2 / c^2``, ``gamma = c * sqrt(sigma2 /
c^2 + eps)``; train-mode BN is invariant to the scale of its input and eval mode keeps ``x * s +
beta`` exactly, so the function is still the checkpoint's. Measured on the same run (1 epoch,
no warm-up, no mosaic): at lr 8e-5 AP 28.1 (norm 1/sqrt(3), the default init's), at the recipe's
lr 1.25e-3 AP 0.15 without the rescale, 3.1 with norm 1/sqrt(3), 25.9 with norm 1.0.

Calibration (decisions):

* images: ``train.bn_calibration_images`` of the training set (default 64; 0 turns
  re-inflation off), spread evenly over it, letterboxed to the training ``input_size`` without
  augmentation (deterministic; eval preprocessing, :func:`~mindyolox.data.transforms.letterbox`),
  in batches of the per-device training batch;
* statistics: because re-inflation leaves the eval function unchanged, one eval-mode forward
  pass over these batches gives every layer's input at once (no layer-by-layer passes).
  Per layer, ``mu`` is the mean of the batch means and ``sigma2`` the mean of the batches'
  biased variances over ``[B, H, W]`` -- what train-mode BN normalises a training batch of
  that size with (a variance pooled over all images would add the spread of the batch means,
  which no train-mode batch sees);
* the inputs are collected by forward pre-hooks on the BN cells, which MindSpore runs in
  PyNative mode only (``Cell.__call__`` goes to the compiled graph in GRAPH_MODE and to
  ``_run_construct`` -- which calls ``_run_forward_pre_hook`` -- in PyNative,
  ``mindspore/nn/cell.py:1393-1424`` and ``1083-1090``), so the pass runs in PyNative and the
  mode is restored after it (nothing of the model is compiled yet at that point); BaseConv's
  in-graph folding is switched off for it (:func:`~mindyolox.models.blocks.bn_unfolded`) so
  that the BN cells are called at all.
* layers: every BN that looks folded, also when only some do (a file mixing folded and
  trained layers, e.g. fine-tuned from folded weights with a frozen backbone): the change is
  exact in eval mode for each layer on its own; the log line then says how many of how many.
"""
import time

import numpy as np

__all__ = ["batchnorm_input_stats", "calibration_batches", "reinflate_batchnorm", "reinflate_folded"]


def calibration_batches(dataset, size, num, batch):
    """Letterboxed images of ``dataset`` for calibration: ``min(num, len(dataset))`` image
    indices spread evenly over the dataset (unreadable ones skipped, counted by the
    dataset), cut into batches of ``batch`` (the last one may be smaller; a batch of one is
    merged into the previous one, a single image's variance being that of one image only).

    Returns ``(batches, count)``: a list of float32 ``[b, 3, H, W]`` arrays (BGR, 0..255,
    ``size = (H, W)``), and the number of images in them."""
    from ..data.transforms import letterbox
    n = min(int(num), len(dataset))
    indices = np.unique(np.linspace(0, len(dataset) - 1, n).round().astype(int)) if n else []
    images = []
    for i in indices:
        img = dataset.read_image(int(i))
        if img is not None:
            images.append(letterbox(img, size)[0].transpose(2, 0, 1))
    batch = max(1, int(batch))
    cuts = list(range(0, len(images), batch))
    if len(cuts) > 1 and len(images) - cuts[-1] == 1:
        cuts.pop()
    bounds = cuts + [len(images)]
    batches = [np.ascontiguousarray(np.stack(images[a:b]), dtype=np.float32) for a, b in zip(bounds, bounds[1:])]
    return batches, len(images)


def batchnorm_input_stats(model, names, batches):
    """Per-channel statistics of the inputs of the BN cells ``names`` of ``model`` over one
    eval-mode forward pass per batch (PyNative; see the module doc).

    ``batches``: float32 arrays ``[b, 3, H, W]``. Returns ``{name: (mean [C], var [C])}``
    float64: the mean over the batches of each batch's per-channel mean and biased variance
    over ``[b, H, W]``."""
    import mindspore as ms
    from ..models.blocks import bn_unfolded

    cells = dict(model.cells_and_names())
    sums = {n: [np.zeros(0), np.zeros(0), 0] for n in names}

    def hook_for(name):
        def hook(cell, args):
            x = args[0].asnumpy().astype(np.float64)            # [b, C, H, W]
            mean = x.mean(axis=(0, 2, 3))
            var = ((x - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))
            acc = sums[name]
            acc[0] = mean if acc[2] == 0 else acc[0] + mean
            acc[1] = var if acc[2] == 0 else acc[1] + var
            acc[2] += 1
        return hook

    handles = [cells[n].register_forward_pre_hook(hook_for(n)) for n in names]
    was_training, mode = model.training, ms.get_context("mode")
    model.set_train(False)
    try:
        if mode != ms.PYNATIVE_MODE:
            ms.set_context(mode=ms.PYNATIVE_MODE)
        with bn_unfolded(model):
            for b in batches:
                model(ms.Tensor(b))
    finally:
        if mode != ms.PYNATIVE_MODE:
            ms.set_context(mode=mode)
        for h in handles:
            h.remove()
        model.set_train(was_training)
    missing = [n for n in names if sums[n][2] == 0]
    if missing:
        raise RuntimeError(f"BatchNorm calibration: no input reached {', '.join(missing[:5])}")
    return {n: (s / k, v / k) for n, (s, v, k) in sums.items()}


WEIGHT_NORM = 1.0   # per output channel, after re-inflation (module doc)


def reinflate_batchnorm(cell, mean, var, conv=None, norm=WEIGHT_NORM):
    """Re-inflate BN ``cell`` whose input has per-channel ``mean``, ``var`` ([C]) so that its
    eval-mode function is unchanged (module doc). ``conv``: the convolution feeding it
    (``Conv2d``, weight ``[C, C_in/g, k, k]``); its output channels are rescaled to weight norm
    ``norm`` (``c = |W_c| / norm``; None or ``norm=None``: ``c = 1``, no rescale)."""
    import mindspore as ms
    eps = float(cell.eps)
    gamma = cell.gamma.asnumpy().astype(np.float64)
    beta = cell.beta.asnumpy().astype(np.float64)
    s = gamma / np.sqrt(cell.moving_variance.asnumpy().astype(np.float64) + eps)
    beta = beta - s * cell.moving_mean.asnumpy().astype(np.float64)   # eval now: x * s + beta
    mean, var = np.asarray(mean, np.float64), np.maximum(np.asarray(var, np.float64), 0.0)
    c = np.ones_like(mean)
    if conv is not None and norm:
        w = conv.weight.asnumpy().astype(np.float64)
        row = np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(axis=1))
        c = np.where(row > 0, row / float(norm), 1.0)
        conv.weight.set_data(ms.Tensor((w / c.reshape(-1, 1, 1, 1)).astype(np.float32)))
        if conv.has_bias:
            conv.bias.set_data(ms.Tensor((conv.bias.asnumpy().astype(np.float64) / c).astype(np.float32)))
    mean, var = mean / c, var / c ** 2          # the statistics of the rescaled input x / c
    for param, value in ((cell.gamma, s * c * np.sqrt(var + eps)), (cell.beta, beta + s * c * mean),
                         (cell.moving_mean, mean), (cell.moving_variance, var)):
        param.set_data(ms.Tensor(value.astype(np.float32)))


def reinflate_folded(model, dataset, size, num, batch, source="", norm=WEIGHT_NORM):
    """Re-inflate every BN of ``model`` that looks folded, calibrated on ``num`` images of
    ``dataset`` letterboxed to ``size`` (H, W) in batches of ``batch`` (module doc).

    Returns one line for the log (None when no layer looks folded); with ``num == 0``,
    the warning that nothing was done and what that means. ``source``: the weights file,
    for the message."""
    from ..errors import DataError
    from ..models.batchnorm import folded_batchnorms
    from ..models.blocks import BaseConv
    names, total = folded_batchnorms(model)
    if not names:
        return None
    of = f"{len(names)} of {total} BatchNorm layers" if len(names) < total else f"all {total} BatchNorm layers"
    where = f" of {source}" if source else ""
    if int(num) <= 0:
        return (f"warning: {of}{where} are folded into their convolutions and train.bn_calibration_images is 0: "
                "they are NOT re-inflated, train-mode BatchNorm renormalises their activations and the model "
                "loses what it detected within an epoch (docs/troubleshooting.md)")
    t0 = time.perf_counter()
    batches, count = calibration_batches(dataset, size, num, batch)
    if not batches:
        raise DataError(f"BatchNorm calibration: none of the {min(int(num), len(dataset))} images chosen "
                        f"from {dataset.name} is readable")
    stats = batchnorm_input_stats(model, names, batches)
    cells = dict(model.cells_and_names())
    for n in names:
        parent = cells.get(n.rsplit(".", 1)[0]) if "." in n else None
        conv = getattr(parent, "conv", None) if isinstance(parent, BaseConv) else None
        reinflate_batchnorm(cells[n], *stats[n], conv=conv, norm=norm)
    rescaled = f"conv weights rescaled to norm {norm:g} per output channel and " if norm else ""
    partial = " (the other layers hold trained statistics and are left as they are)" if len(names) < total else ""
    return (f"fine-tuning: {of}{where} were folded into their convolutions (weight 1, running mean 0, "
            f"running variance 1-eps: weights recovered from an exported graph); re-inflated{partial}: running "
            f"statistics measured on {count} images of {dataset.name} at {size[0]}x{size[1]} (no augmentation, "
            f"batches of {int(batch)}), {rescaled}BN weight and bias "
            f"set so the eval-mode output is unchanged: training starts from the checkpoint's function "
            f"({time.perf_counter() - t0:.1f} s)")
