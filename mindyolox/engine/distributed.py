"""Data-parallel helpers outside the compiled step: broadcast of the initial weights and the
official ``all_reduce_norm`` (BN statistics averaged over ranks). Both go through one flat
float32 ``AllReduce``; ``mindspore.communication`` must be initialised."""
import numpy as np

__all__ = ["init_data_parallel", "flat_all_reduce", "broadcast_initial_weights", "all_reduce_norm"]


def init_data_parallel():
    """Initialise communication for data parallelism; returns ``(rank, world_size)``."""
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    from ..errors import MindYOLOXError
    try:
        init()
    except RuntimeError as e:
        raise MindYOLOXError("--distributed: could not initialise communication (launch with "
                             f"msrun --worker_num=N --local_worker_num=N train.py ...): "
                             f"{str(e).strip().splitlines()[0]}") from None
    rank, world = get_rank(), get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=world)
    return rank, world


def flat_all_reduce(params, world_size, mean):
    """All-reduce (sum, or mean over ``world_size`` ranks) the values of ``params`` in place."""
    import mindspore as ms
    from mindspore import nn, ops
    arrays = [p.asnumpy().astype(np.float32).ravel() for p in params]
    flat = np.concatenate(arrays) if arrays else np.zeros(1, np.float32)

    class _AR(nn.Cell):
        def __init__(self):
            super().__init__()
            self.ar = ops.AllReduce()

        def construct(self, x):
            return self.ar(x)
    out = _AR()(ms.Tensor(flat)).asnumpy()
    if mean:
        out = out / world_size
    pos = 0
    for p, a in zip(params, arrays):
        p.set_data(ms.Tensor(out[pos:pos + a.size].reshape(p.shape), dtype=p.dtype))
        pos += a.size


def broadcast_initial_weights(model, ema_model, rank, world_size):
    """Every rank starts from rank 0's weights (sum of rank-0-masked values); the EMA copies them."""
    params = [p for _, p in model.parameters_and_names()]
    if rank != 0:
        for p in params:
            p.set_data(p.data * 0)
    flat_all_reduce(params, world_size, mean=False)
    if ema_model is not None:
        for (_, e), p in zip(ema_model.parameters_and_names(), params):
            e.set_data(p.data.copy())


def all_reduce_norm(model, world_size):
    """Average the BN moving statistics over ranks (official ``all_reduce_norm``)."""
    flat_all_reduce([p for n, p in model.parameters_and_names() if "moving_" in n], world_size, mean=True)
