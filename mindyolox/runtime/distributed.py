"""Data-parallel helpers outside the compiled step: broadcast of the initial weights, the
official ``all_reduce_norm`` (BN statistics averaged over ranks), and the exchanges of a
distributed evaluation (detections gathered to every rank, rank 0's metrics sent to every
rank). They go through single ``AllReduce`` / ``AllGather`` operators, not compiled graphs
(:func:`_collective`: the graph cache stays in step order; the evaluation's shapes are
bucketed to powers of two); ``mindspore.communication`` must be initialised. Nothing here assumes one node: ranks are global, no file is shared."""
import os
import re

import numpy as np

from ..errors import MindYOLOXError

__all__ = ["PeerLost", "lost_ranks", "init_data_parallel", "launcher_world_size", "check_not_launched_in_parallel",
           "flat_all_reduce", "all_reduce_sum", "broadcast_initial_weights", "all_reduce_norm",
           "all_gather_rows", "broadcast_from_rank0"]

_OPS = {}


def _collective(name, x):
    """``AllReduce`` (sum) or ``AllGather`` (concatenation along axis 0) of the numpy array
    ``x``, run as a single operator, never as a compiled graph.

    A primitive called outside a ``Cell``/``jit`` runs op by op through the PyNative executor
    even in GRAPH_MODE (``Primitive.__call__`` -> ``_run_op`` ->
    ``_pynative_executor.run_op_async``, ``mindspore/ops/primitive.py:390-397, 1001-1007``), so it
    takes no place in MindSpore's on-disk graph cache, which is keyed by the order in which a
    process compiles its graphs (:mod:`~mindyolox.runtime.compile_cache`). As graphs (one small
    cell per op, compiled per shape) these exchanges took places whose order depends on where a
    run starts and stops and on the evaluation's detection counts, so a later run of the same
    recipe loaded one exchange's graph in another's place: a wrong stop request, then
    ``cannot reshape array of size 2 into shape (16,)`` in the BN average of a resumed
    ``msrun`` run (``tests/test_distributed_stop.py``). Checked under ``msrun`` on CPU: direct
    ``AllReduce``/``AllGather`` calls of three shapes add no file to the cache folder."""
    import mindspore as ms
    from mindspore import ops
    if name not in _OPS:
        _OPS[name] = ops.AllReduce() if name == "AllReduce" else ops.AllGather()
    return _OPS[name](ms.Tensor(np.ascontiguousarray(x))).asnumpy()


def _all_gather(x):
    return _collective("AllGather", x)


def all_reduce_sum(x):
    """Element-wise sum over the ranks of the float32 numpy array ``x`` (same shape on every
    rank), on every rank: the trainer's loss statistics (``TrainStep.read_stats``)."""
    return _collective("AllReduce", np.ascontiguousarray(x, dtype=np.float32))


def _bucket(n):
    return 1 << max(6, int(np.ceil(np.log2(max(n, 1)))))


def all_gather_rows(rows, world_size):
    """Every rank's float32 ``rows [n_r, k]`` (``n_r`` may differ), concatenated in rank order
    on every rank: ``[sum n_r, k]``, bit-exact (values are moved, not added)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    counts = _all_gather(np.array([len(rows)], np.int32))
    m = _bucket(int(counts.max()))
    padded = np.zeros((m, rows.shape[1]), np.float32)
    padded[:len(rows)] = rows
    out = _all_gather(padded).reshape(int(world_size), m, rows.shape[1])
    return np.concatenate([out[r, :int(c)] for r, c in enumerate(counts)])


def broadcast_from_rank0(values, world_size):
    """Rank 0's float64 vector ``values`` on every rank, bit-exact: its bytes travel as int32
    words through an ``AllGather`` (MindSpore's CPU ``AllReduce`` takes floats only) and rank
    0's block is kept. Every rank passes a vector of the same length."""
    words = np.ascontiguousarray(values, dtype=np.float64).view(np.int32)
    n = len(words)
    buf = np.zeros(_bucket(n), np.int32)
    buf[:n] = words
    return _all_gather(buf).reshape(int(world_size), -1)[0, :n].view(np.float64).copy()


class PeerLost(MindYOLOXError):
    """Ranks stopped answering after the job had started (``ranks``: their ids, the first one
    to stop first); not a launch problem."""

    def __init__(self, ranks, detail, step=None):
        self.ranks, self.detail, self.step = list(ranks), detail, step
        where = f"at step {step} (the last one logged)" if step is not None else "after the job had started"
        others = (f"; msrun then stopped rank(s) {', '.join(map(str, self.ranks[1:]))}" if len(self.ranks) > 1
                  else "")
        super().__init__(f"--distributed: rank {self.ranks[0]} stopped answering {where}{others}. See "
                         f"worker_{self.ranks[0]}.log for why; continue with --resume ({detail})")


_TIMED_OUT = re.compile(r"[Tt]imed out node list is:[^{]*\{([\d,\s]*)\}(?:.*?worker (\d+) is the first)?")


def lost_ranks(message):
    """Rank ids named by MindSpore's scheduler as timed out (the first to time out first), or
    None. The text is what ``init()`` raises in msrun's scheduler process when workers stop
    sending heartbeats (mindspore/ccsrc/cluster/topology/meta_server_node.cc, UpdateTopoState /
    Finalize, seen in MindSpore 2.10 as "The total number of timed out node is 2. Timed out node
    list is: [const vector]{0, 1}, worker 0 is the first one timed out")."""
    m = _TIMED_OUT.search(message)
    if not m:
        return None
    ranks = [int(v) for v in m.group(1).replace(",", " ").split()]
    if m.group(2) is not None and int(m.group(2)) in ranks:
        ranks.remove(int(m.group(2)))
        ranks.insert(0, int(m.group(2)))
    return ranks or None


_WATCH = r"""
import os, sys, time
port, seen, gone, parent = sys.argv[1], {}, [], os.getppid()
def scan():
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                exe = os.path.basename(f.read().split(b"\0")[0])
            if not exe.startswith(b"python"):  # msrun's `tail -f worker_N.log` has the same environment
                continue
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        except OSError:
            continue
        if env.get(b"MS_ROLE") == b"MS_WORKER" and env.get(b"MS_SCHED_PORT", b"").decode() == port:
            rank = (env.get(b"MS_NODE_ID") or env.get(b"RANK_ID") or b"").decode()
            if rank.isdigit():
                found[int(rank)] = pid
    return found
while os.getppid() == parent:  # ends with the scheduler process at the latest
    now = scan()
    seen.update(now)
    for rank in sorted(seen):
        if rank not in now and rank not in gone:
            gone.append(rank)
            print(rank, flush=True)
    time.sleep(0.2)
"""


class _WorkerWatch:
    """In msrun's scheduler process: a small helper process that notes, every 0.2 s, which
    workers of this job on this machine (Python processes whose environment holds
    ``MS_ROLE=MS_WORKER`` and this scheduler's ``MS_SCHED_PORT``, rank in ``MS_NODE_ID`` /
    ``RANK_ID``) went away, in order. MindSpore's own list of timed-out nodes cannot tell: msrun SIGKILLs every other worker
    within a second of the first exiting with an error (process_entity/_api.py:363-371 and
    402-409), so all of them time out together, listed in rank order. A process, not a thread:
    the scheduler's ``init()`` holds the GIL until the job ends."""

    def __init__(self, port=None):
        import subprocess
        import sys
        port = port if port is not None else os.environ.get("MS_SCHED_PORT", "")
        self.proc = subprocess.Popen([sys.executable, "-c", _WATCH, str(port)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)

    def stop(self):
        """Ranks gone so far, first gone first."""
        self.proc.kill()
        out, _ = self.proc.communicate()
        return [int(v) for v in out.split()]


def launcher_world_size(environ=None):
    """The number of workers a launcher started this process among: ``MS_WORKER_NUM`` (set
    by ``msrun`` in every worker, ``mindspore/parallel/cluster/process_entity/_api.py:59``)
    or ``RANK_SIZE`` (set by ``msrun``, ``_api.py:255``, and by rank-table launch scripts);
    1 when neither is set (or either is not a number)."""
    env = os.environ if environ is None else environ
    for key in ("MS_WORKER_NUM", "RANK_SIZE"):
        try:
            n = int(env.get(key, "1") or "1")
        except ValueError:
            continue
        if n > 1:
            return n, key
    return 1, None


def check_not_launched_in_parallel(environ=None):
    """Refuse to train without ``--distributed`` under a multi-worker launch (``msrun``).

    Decision: an error, not distributed switched on silently. Without it every worker would
    train alone on the full data as rank 0 and all of them would write (and clean) the same
    run folder; switching data parallel on behind the user's back would change what
    ``train.batch_size`` means per device. So the run stops with one line that names the
    variable and the fix (``MindYOLOXError``, exit code 2 from ``train.py``)."""
    n, key = launcher_world_size(environ)
    if n > 1:
        raise MindYOLOXError(f"this process is one of {n} workers of a parallel launch ({key}={n}, set by msrun) "
                             "but training runs without --distributed: each worker would train alone as rank 0 "
                             "into the same run folder; add --distributed (or start one process with python "
                             "train.py)")


def init_data_parallel():
    """Initialise communication for data parallelism; returns ``(rank, world_size)``.

    Under ``msrun`` the same script also runs as the scheduler (``MS_ROLE=MS_SCHED``,
    mindspore/parallel/cluster/process_entity/_api.py:80; its ``init()`` runs the cluster's
    meta server, mindspore/communication/management.py:184, and returns only when the job ends).
    When workers stop sending heartbeats there -- a worker killed or crashed after a working
    start -- it raises :class:`PeerLost` naming them, not the launch advice."""
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    watch = _WorkerWatch() if os.environ.get("MS_ROLE") == "MS_SCHED" else None
    try:
        init()
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        ranks = lost_ranks(str(e))
        if ranks is not None and watch is not None:
            seen = watch.stop()  # this machine's workers in the order they went away
            ranks = seen + [r for r in ranks if r not in seen]
            raise PeerLost(ranks, first) from None
        if watch is not None:
            watch.stop()
        raise MindYOLOXError("--distributed: could not initialise communication (launch with "
                             f"msrun --worker_num=N --local_worker_num=N train.py ...): {first}") from None
    if watch is not None:
        watch.stop()
    rank, world = get_rank(), get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=world)
    return rank, world


def flat_all_reduce(params, world_size, mean):
    """All-reduce (sum, or mean over ``world_size`` ranks) the values of ``params`` in place."""
    import mindspore as ms
    arrays = [p.asnumpy().astype(np.float32).ravel() for p in params]
    flat = np.concatenate(arrays) if arrays else np.zeros(1, np.float32)
    out = _collective("AllReduce", flat)
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
