"""COCO / VOC evaluation of an exported artifact with the project's own evaluator
(``test.py --model FILE``): the same loader, letterbox, ``postprocess`` and COCOeval as for a
Cell, only the forward pass is the artifact's (:mod:`mindyolox.deploy.runners`).

:class:`ArtifactNetwork` gives a runner the protocol :func:`mindyolox.evaluation.evaluate` calls:
``net(Tensor [B, 3, H, W]).asnumpy()`` -> decoded rows ``[B, N, 5+C]``; an end-to-end NMS
graph's K rows are handed on as one-hot rows (see :func:`~mindyolox.deploy.runners.as_decoded`).
"""
import numpy as np

from ..deploy.runners import as_decoded, open_runner

__all__ = ["ArtifactNetwork", "open_artifact"]


class _Array:
    def __init__(self, a):
        self._a = a

    def asnumpy(self):
        return self._a


class ArtifactNetwork:
    """Callable like an eval-mode YOLOX Cell (decoded outputs); ``runner`` is kept as ``.runner``."""

    def __init__(self, runner):
        self.runner = runner
        self.num_classes = runner.num_classes
        self.training = False

    def set_train(self, mode=False):
        return self

    def __call__(self, x):
        arr = x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)
        return _Array(as_decoded(self.runner, self.runner(arr)))


def open_artifact(path, device=None, backend="auto"):
    """:class:`ArtifactNetwork` over :func:`~mindyolox.deploy.runners.open_runner`."""
    return ArtifactNetwork(open_runner(path, device, backend))
