"""BatchNorm2d with PyTorch's training numerics.

MindSpore's fused CPU BatchNorm kernel computes the batch variance in one pass
(E[x^2] - E[x]^2 in float32), which loses precision when a channel's mean is large next to
its spread: at mean 100, std 1 the output is off by 2e-5, PyTorch by 1e-7. Through a
YOLOX network that made train-mode head outputs and gradients differ from the official
ones by 10x the float32 floor. This Cell computes the statistics in two passes
(mean, then the mean of squared deviations) and normalises with them; gradients flow
through the statistics by autodiff, exactly as in PyTorch's training BatchNorm.

Parameter names and semantics equal ``mindspore.nn.BatchNorm2d``: ``gamma``, ``beta``,
``moving_mean``, ``moving_variance``; ``momentum`` is MindSpore's (the weight of the old
value: 0.97 here is PyTorch's 0.03). Running variance uses the unbiased batch variance and
normalisation the biased one, as PyTorch does. Eval mode uses the fused inference kernel.
"""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops


class BatchNorm2d(nn.Cell):
    """Batch normalisation over [B, C, H, W] (statistics per channel C)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.9):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.gamma = Parameter(Tensor(np.ones(num_features, np.float32)), name="gamma")
        self.beta = Parameter(Tensor(np.zeros(num_features, np.float32)), name="beta")
        self.moving_mean = Parameter(Tensor(np.zeros(num_features, np.float32)),
                                     name="moving_mean", requires_grad=False)
        self.moving_variance = Parameter(Tensor(np.ones(num_features, np.float32)),
                                         name="moving_variance", requires_grad=False)
        self.infer = ops.BatchNorm(is_training=False, epsilon=eps)

    def construct(self, x):
        if not self.training:
            return self.infer(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)[0]
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
