"""BatchNorm2d with PyTorch's training semantics and a choice of two training kernels.

Parameter names and semantics equal ``mindspore.nn.BatchNorm2d``: ``gamma``, ``beta``,
``moving_mean``, ``moving_variance``; ``momentum`` is MindSpore's (the weight of the old
value: 0.97 here is PyTorch's 0.03). Running variance takes the unbiased batch variance and
normalisation the biased one, as PyTorch does. Eval mode uses the fused inference kernel.

Train mode, statistics per channel over [B, H, W]:

* ``exact = False`` (default, ``model.exact_bn: false``): MindSpore's fused training kernel
  fed with the input minus the running mean (a constant: shifts change neither the output
  nor the gradient of a batch norm). The kernel computes the variance in one pass
  (E[x^2] - E[x]^2 in float32), which loses precision when a channel's mean is large next
  to its spread (at mean 100, std 1 the output is off by 2e-5); centred on the running mean,
  which tracks the batch mean after the first ~100 steps (and at once with trained
  weights), it matches the two-pass result. The running mean gets the centre added back.
  Its backward
  kernel sums over B*H*W in float32 less carefully than PyTorch: parameter gradients of a
  YOLOX network differ from the official ones by up to ~3e-3 relative (4x the float32 floor
  of one-ULP input noise), which is irrelevant for SGD and 1.4x faster per train step.
``cast_output`` (None, or a float type; set by mixed precision O2): the output is cast to it
-- a float32 BatchNorm (``to_float(float32)``) inside a float16 network.

* ``exact = True`` (``model.exact_bn: true``): two passes (mean, then the mean of squared
  deviations) written in ops and differentiated by autodiff, exactly PyTorch's float32
  numerics; the parity tests against the official gradients use it.

* compiled kernel (``use_kernels(True)``: ``runtime.cpu_kernels``, the CPU default), float32
  inputs, either ``exact``: :func:`mindyolox.ops.cpu_kernels.batch_norm`, two passes in
  double (the ``exact`` numerics, at a fraction of the fused kernel's time: one read for the
  mean, one for the variance, one write) and the analytic backward in one more kernel. The
  kernel moves the running statistics (as the ``exact`` path computes them) IN PLACE: it
  writes its inputs ``moving_mean`` / ``moving_variance``, which in a compiled CPU graph are
  the Parameters' own memory (``tests/test_cpu_kernels.py`` reads them back through
  ``asnumpy`` against the float64 update; the EMA reads the same memory, ``training/ema.py``).
  Returning them and writing them with ``Assign`` took 2 outputs, 2 ``Assign`` and 2
  ``Depend`` per layer, side-effect nodes inside the differentiated forward that cost the
  nano train step's compile 4-6 s of 15-17 (alternated runs, AMD EPYC). Sound because
  MindSpore sees a pure operator: it runs it once per call of the layer as long as its
  output is used (a train-mode forward always uses it) and could only merge two calls with
  identical inputs (the same layer twice in one graph on the same input: then the statistics
  move once, not twice). No other kernel of a train graph reads the running statistics (the
  eval path is another graph).
"""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype

from ..ops import cpu_kernels

__all__ = ["BatchNorm2d", "folded_batchnorms", "looks_folded", "set_exact_batchnorm"]


class BatchNorm2d(nn.Cell):
    """Batch normalisation over [B, C, H, W] (statistics per channel C)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.9, exact=False):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.exact = bool(exact)
        self.gamma = Parameter(Tensor(np.ones(num_features, np.float32)), name="gamma")
        self.beta = Parameter(Tensor(np.zeros(num_features, np.float32)), name="beta")
        self.moving_mean = Parameter(Tensor(np.zeros(num_features, np.float32)),
                                     name="moving_mean", requires_grad=False)
        self.moving_variance = Parameter(Tensor(np.ones(num_features, np.float32)),
                                         name="moving_variance", requires_grad=False)
        self.infer = ops.BatchNorm(is_training=False, epsilon=eps)
        self.fused = ops.BatchNorm(is_training=True, epsilon=eps, momentum=1.0 - momentum)
        self.cast_output = None
        self.frozen = False     # train.freeze: eval-mode normalisation in training too
        self.kernel = None
        self.kernel_silu = None
        self.kernel_cfg = Tensor([eps, momentum], dtype=mstype.float32)

    def use_kernels(self, on):
        """Train mode through the compiled CPU kernel (float32 inputs; module doc)."""
        self.kernel = cpu_kernels.batch_norm() if on else None
        self.kernel_silu = cpu_kernels.batch_norm_silu() if on else None

    def fused_silu(self, x):
        """``SiLU(self(x))`` in train mode through one compiled kernel each way
        (:func:`~mindyolox.ops.cpu_kernels.batch_norm_silu`; x [B, C, H, W] float32, ``use_kernels``
        on, not frozen): the running statistics move as :meth:`normalize` moves them."""
        return self.kernel_silu(x, self.gamma, self.beta, self.moving_mean, self.moving_variance, self.kernel_cfg)[0]

    def construct(self, x):
        y = self.normalize(x)
        if self.cast_output is not None:
            y = y.astype(self.cast_output)
        return y

    def normalize(self, x):
        """The batch norm of ``x`` (see the module doc), in ``x``'s dtype."""
        if not self.training or self.frozen:
            return self.infer(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)[0]
        if self.kernel is not None and x.dtype == mstype.float32:
            return self.kernel(x, self.gamma, self.beta, self.moving_mean, self.moving_variance, self.kernel_cfg)[0]
        if not self.exact:
            centre = ops.stop_gradient(self.moving_mean * 1.0)   # read before the kernel updates it
            # centred by a per-channel bias add: a broadcast ``x - centre[1, C, 1, 1]`` costs as
            # much time and keeps MindSpore's CPU backend from reusing activation memory
            # (nano train step at 416 b8: 5.0 -> 3.8 GB peak)
            y = self.fused(ops.bias_add(x, -centre), self.gamma, self.beta, self.moving_mean,
                           self.moving_variance)[0]
            # the kernel moved moving_mean towards mean(x - centre): add the centre's share back
            return ops.depend(y, ops.assign_add(self.moving_mean, centre * (1.0 - self.momentum)))
        b, c, h, w = x.shape
        n = b * h * w
        mean = x.mean(axis=(0, 2, 3), keep_dims=True)
        xc = x - mean
        var = (xc * xc).mean(axis=(0, 2, 3), keep_dims=True)
        scale = ops.rsqrt(var + self.eps) * self.gamma.reshape(1, c, 1, 1)
        y = xc * scale + self.beta.reshape(1, c, 1, 1)
        keep = self.momentum
        batch_mean = ops.stop_gradient(mean.reshape(c))
        batch_var = ops.stop_gradient(var.reshape(c)) * (n / max(n - 1, 1))
        y = ops.depend(y, ops.assign(self.moving_mean,
                                     self.moving_mean * keep + batch_mean * (1 - keep)))
        y = ops.depend(y, ops.assign(self.moving_variance,
                                     self.moving_variance * keep + batch_var * (1 - keep)))
        return y


FOLDED_TOL = 1e-5   # absolute, per value: float32 rounding of 1 - eps is ~6e-8


def looks_folded(cell, tol=FOLDED_TOL):
    """True when the BatchNorm ``cell`` holds no statistics of its own: on every channel
    ``gamma == 1``, ``moving_mean == 0`` and ``moving_variance == 1 - eps`` (to ``tol``).

    That is what a checkpoint recovered from an exported graph (ONNX, where BatchNorm was
    folded into the convolution) holds: the eval-mode output ``(x - 0) / sqrt(1 - eps + eps)
    * 1 + beta`` is exactly ``x + beta``, the folded bias added to the convolution's output.
    A freshly initialised layer (``moving_variance == 1``) and any layer that saw data in
    training (its moving statistics moved) do not match."""
    g = cell.gamma.asnumpy()
    m = cell.moving_mean.asnumpy()
    v = cell.moving_variance.asnumpy()
    return bool(np.all(np.abs(g - 1.0) <= tol) and np.all(np.abs(m) <= tol)
                and np.all(np.abs(v - (1.0 - cell.eps)) <= tol))


def folded_batchnorms(model, tol=FOLDED_TOL):
    """``(folded, total)``: the names of the :class:`BatchNorm2d` cells of ``model`` that
    :func:`looks_folded`, and the number of BatchNorm2d cells."""
    cells = [(n, c) for n, c in model.cells_and_names() if isinstance(c, BatchNorm2d)]
    return [n for n, c in cells if looks_folded(c, tol)], len(cells)


def set_exact_batchnorm(model, exact=True):
    """Choose the train-mode kernel of every :class:`BatchNorm2d` in ``model`` (see the module
    doc); call before the first train-mode call compiles the graph. Returns the count."""
    n = 0
    for _, cell in model.cells_and_names():
        if isinstance(cell, BatchNorm2d):
            cell.exact = bool(exact)
            n += 1
    return n
