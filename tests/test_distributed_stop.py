"""Stops all ranks agree on, mid-epoch checkpoints and BN statistics before every save (issue 35,
deliverables 1, 2 and 7).

Fast tests: :class:`~mindyolox.runtime.stop.StopRequests` (the STOP file, a stale one, signals
first, the agreement over two ranks through a stand-in sum), the chunk boundary at
``train.checkpoint_interval`` and the key's check.

Slow tests: ``train.py`` itself under ``msrun`` with 2 CPU workers (YOLOX-nano at 64 px on coco16,
batch 1 per rank, 3 epochs x 8 steps, ``--no-eval``, ``train.checkpoint_interval=1``), one chain
of launches that together make an uninterrupted run:

* R: the reference, uninterrupted;
* A: fresh; the test sends SIGTERM to rank 1 only once step 4 is logged -> both ranks stop after
  the same step, both exit 143, rank 0's ``last.ckpt`` holds that step;
* B: ``--resume``; the test creates ``<run>/STOP`` once 3 more steps are logged -> both stop
  after the same step, exit 0, the file is removed;
* C: ``--resume`` with a stale ``STOP`` file put there before the launch (ignored: the run trains
  on) and the test SIGKILLs every worker once 3 more steps are logged (msrun's Ctrl-C does the
  same) -> ``last.ckpt`` is a mid-epoch checkpoint at most one step old;
* D: ``--resume`` to the end -> its ``last.ckpt`` equals R's bit for bit (weights, EMA, momentum,
  loss-scale state, BN statistics), and each rank's BN statistics at the end equal the file's.

(Checkpoints every step keep the chain's BatchNorm averages at the same steps as R's, wherever
a signal lands: the stop's save averages them, as every save does.) N: the negative control, A
with :meth:`StopRequests.agree` patched to this rank's own request: rank 1 stops alone and the
job hangs (killed 60 s after the signal) or the ranks disagree.

R, A and N start from step 0 and share one compile cache (``--compile-cache``: keyed by the
start position, so the resumes compile their own graphs).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mindyolox.runtime.stop import STOP_FILE, StopRequest, StopRequests

from .conftest import ROOT, shared_path

STEPS_PER_EPOCH, EPOCHS = 8, 3
TOTAL = STEPS_PER_EPOCH * EPOCHS


# ============================================================================ fast
def test_a_stop_file_created_during_the_run_is_a_request(tmp_path):
    req = StopRequests(tmp_path)
    assert req.stale is None and req.local_code() == 0 and req.agree() is None
    (tmp_path / STOP_FILE).touch()
    agreed = req.agree()
    assert agreed is not None and agreed.file and agreed.signum is None
    assert str(agreed) == "STOP file on rank 0"
    assert req.remove_file() and not (tmp_path / STOP_FILE).exists()
    assert req.agree() is None


def test_a_stale_stop_file_is_ignored_until_touched(tmp_path):
    stop = tmp_path / STOP_FILE
    stop.write_text("")
    os.utime(stop, ns=(1_000_000_000, 1_000_000_000))
    req = StopRequests(tmp_path)  # the run starts with the file there
    assert req.stale is not None
    assert req.agree() is None  # the resumed run trains on
    os.utime(stop, ns=(2_000_000_000, 2_000_000_000))  # touch STOP
    assert req.agree() is not None


def test_a_signal_is_this_ranks_request_and_names_the_exit_code(tmp_path):
    req = StopRequests(tmp_path)
    req.note_signal(signal.SIGTERM)
    req.note_signal(signal.SIGINT)  # the first one counts
    (tmp_path / STOP_FILE).touch()
    agreed = req.agree()
    assert str(agreed) == "SIGTERM on rank 0" and agreed.signum == signal.SIGTERM
    assert not agreed.file


def test_two_ranks_agree_on_a_signal_one_of_them_received(tmp_path):
    """Rank 1 got SIGTERM, rank 0 nothing: with the sum over ranks both stop, naming rank 1;
    without it (the negative control: each rank's own vector) rank 0 would train on."""
    ranks = [StopRequests(tmp_path, rank=r, world_size=2) for r in (0, 1)]
    ranks[1].note_signal(signal.SIGTERM)
    vectors = [np.zeros(2, np.float32) for _ in ranks]
    for r, req in enumerate(ranks):
        vectors[r][r] = req.local_code()
    total = vectors[0] + vectors[1]
    for req in ranks:
        req._reduce = lambda v: total
    agreed = [req.agree() for req in ranks]
    assert [str(a) for a in agreed] == ["SIGTERM on rank 1"] * 2
    assert {a.signum for a in agreed} == {signal.SIGTERM}  # one exit code (143) on every rank
    for req in ranks:
        req._reduce = lambda v: v  # no all-reduce
    assert [req.agree() is not None for req in ranks] == [False, True]


def test_several_requests_are_named_by_kind_and_rank():
    req = StopRequest([(2, 1), (0, 3), (1, 3)])
    assert str(req) == "STOP file on ranks 0, 1; SIGINT on rank 2"
    assert req.signum is None and req.file  # the first rank's request decides the exit code


def test_a_chunk_ends_at_each_checkpoint_interval():
    from mindyolox.training.trainer import Trainer
    class Cfg(dict):
        __getattr__ = dict.__getitem__
    tr = SimpleNamespace(tcfg=Cfg(print_interval=10, checkpoint_interval=3), loader=SimpleNamespace(interval=10),
                         steps_per_epoch=8, max_iters=None, iters_done=0, epoch=1, iter=0)
    ends = []
    while tr.iter < tr.steps_per_epoch:
        tr.progress_in_iter = tr.epoch * tr.steps_per_epoch + tr.iter
        tr.iter += Trainer._chunk_length(tr)
        ends.append(tr.epoch * tr.steps_per_epoch + tr.iter)
    # global steps done at each chunk end: multiples of 3 (mid-epoch saves), the log line at 10, the epoch end
    assert ends == [9, 10, 12, 15, 16]
    tr.tcfg["checkpoint_interval"] = 0
    tr.iter = 0
    tr.progress_in_iter = 8
    assert Trainer._chunk_length(tr) == 2  # 0: only the log line / epoch end cut a chunk


def test_a_negative_checkpoint_interval_is_refused():
    from mindyolox import load_config
    from mindyolox.errors import ConfigError
    with pytest.raises(ConfigError, match=r"'train\.checkpoint_interval'"):
        load_config(str(ROOT / "configs" / "yolox-nano.yaml"), ["train.checkpoint_interval=-1"])
    cfg = load_config(str(ROOT / "configs" / "yolox-nano.yaml"), [])
    assert cfg.train.checkpoint_interval == 1000  # the default (docs/troubleshooting.md: its cost)


# ============================================================================ msrun
DRIVER = textwrap.dedent('''
    """One msrun worker (or the scheduler): train.py's main with two test additions."""
    import os, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    out = os.environ["MINDYOLOX_TEST_LEG_OUT"]  # one script for every launch: see _launch
    worker = os.environ.get("MS_ROLE") == "MS_WORKER"
    rank = os.environ.get("MS_NODE_ID", "x")
    if worker:
        with open(f"{{out}}/pid_{{rank}}", "w") as f:
            f.write(str(os.getpid()))
    if os.environ.get("MINDYOLOX_TEST_NO_AGREEMENT"):  # the negative control: each rank's own request
        from mindyolox.runtime import stop
        def own(self):
            code = self.local_code()
            self.agreed = stop.StopRequest([(self.rank, code)]) if code else None
            return self.agreed
        stop.StopRequests.agree = own
    from mindyolox.training import trainer as trainer_module
    from mindyolox.training.hooks import TrainHook

    class Dump(TrainHook):  # each rank's BN statistics and stop at the end
        priority = 100
        def after_train(self, tr):
            stats = {{n: p.asnumpy() for n, p in tr.model.parameters_and_names() if "moving_" in n}}
            stats.update({{"ema." + n: p.asnumpy() for n, p in tr.ema_model.parameters_and_names()
                          if "moving_" in n}})
            np.savez(f"{{out}}/bn_{{tr.rank}}.npz", **stats)
    builtin = trainer_module.builtin_hooks
    trainer_module.builtin_hooks = lambda: builtin() + [Dump()]
    from mindyolox.commands.train import main
    code = main(sys.argv[1:])
    if worker:
        with open(f"{{out}}/exit_{{rank}}", "w") as f:
            f.write(str(code))
    sys.exit(code)
''')


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _logged_step(run):
    """Steps done per rank 0's metrics.jsonl (the last train record's step + 1), 0 before any."""
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    steps = [json.loads(x)["step"] for x in lines[-5:] if '"type": "train"' in x]
    return steps[-1] + 1 if steps else 0


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _launch(tmp, leg, run, cache, extra=(), act=None, env=None, timeout=600, after_act=None):
    """``msrun`` with 2 workers running the driver for ``train.py`` (args below + ``extra``).
    ``act(out)``: polled every 0.1 s, returns True once it has acted; ``after_act``: seconds the
    launch may take after that (else it is killed as hung). Once both workers have exited, msrun
    gets 5 s to finish (its scheduler may wait for the heartbeats of killed workers): then it is
    killed. Returns ``(returncode or None if killed, out folder, worker logs, hung)``, ``hung``:
    a worker was still running when the launch was killed."""
    out, logs = tmp / leg, tmp / f"{leg}_logs"
    out.mkdir()
    # One driver file beside the cache for every launch: MindSpore accepts a cached graph only
    # if the entry script's hash is unchanged (mindspore/graph/api.py:306-362), so a script per
    # launch made every launch compile again (~50-85 s each on 2 cores).
    driver = cache.parent / "driver.py"
    if not driver.is_file():
        driver.write_text(DRIVER.format(root=str(ROOT)))
    env = dict(env or {}, MINDYOLOX_TEST_LEG_OUT=str(out))
    bindir = Path(sys.executable).parent
    overrides = [f"data.data_dir={shared_path('data', 'coco16')}", "data.input_size=[64,64]", "data.random_size=[]",
                 "data.multiscale_range=0", "train.batch_size=2", f"train.max_epoch={EPOCHS}",
                 "train.warmup_epochs=1", "train.no_aug_epochs=1", "train.print_interval=1",
                 "train.checkpoint_interval=1", "train.tensorboard=false"]
    cmd = [str(bindir / "msrun"), "--worker_num=2", "--local_worker_num=2", f"--master_port={_free_port()}",
           f"--log_dir={logs}", "--join=True", str(driver), "--config", str(ROOT / "configs" / "yolox-nano.yaml"),
           "--run-dir", str(run), "--distributed", "--device", "CPU", "--no-eval", "--no-progress", "--workers",
           "0", "--compile-cache", str(cache), *extra, *overrides]
    penv = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {}))
    penv = {k: v for k, v in penv.items() if not k.startswith("MS_COMPILER_CACHE")}
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=penv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # own session: a timeout kills the whole launch
    t0, acted_at, workers_gone_at, code, hung = time.monotonic(), None, None, None, False
    while True:
        code = proc.poll()
        if code is not None:
            break
        now = time.monotonic()
        if act is not None and acted_at is None and act(out):
            acted_at = now
        pids = [_pid(out, r) for r in (0, 1)]
        alive = [p is not None and _alive(p) for p in pids]
        if all(p is not None for p in pids) and not any(alive) and workers_gone_at is None:
            workers_gone_at = now
        late = (now - t0 > timeout or (acted_at is not None and after_act is not None and now - acted_at > after_act)
                or (workers_gone_at is not None and now - workers_gone_at > 5))
        if late:
            hung = any(alive)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
            break
        time.sleep(0.1)
    worker_logs = {p.name: p.read_text(errors="replace") for p in sorted(Path(logs).glob("worker_*.log"))}
    return code, out, worker_logs, hung


def _pid(out, rank):
    p = out / f"pid_{rank}"
    return int(p.read_text()) if p.is_file() and p.read_text() else None


def _exits(out):
    """Each worker's exit code as train.py's main returned it (None: it did not return)."""
    return [(out / f"exit_{r}").read_text() if (out / f"exit_{r}").is_file() else None for r in (0, 1)]


def _stop_lines(log):
    return re.findall(r"stopping after step (\d+): (.*?); last\.ckpt holds", log)


def _fail(msg, logs):
    tails = "\n".join(f"--- {k}\n" + "\n".join(v.splitlines()[-30:]) for k, v in logs.items())
    pytest.fail(f"{msg}\n{tails}")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from mindyolox.training.checkpoint import read_meta
    tmp = tmp_path_factory.mktemp("stop")
    cache, run, ref = tmp / "cache", tmp / "run", tmp / "ref"
    legs = {}

    code, out, logs, hung = _launch(tmp, "R", ref, cache)
    if _exits(out) != ["0", "0"]:
        _fail(f"reference run: msrun {code}, workers {_exits(out)}", logs)
    legs["R"] = dict(out=out, logs=logs)

    def sigterm_rank1(out):
        if _logged_step(run) >= 4 and _pid(out, 1):
            os.kill(_pid(out, 1), signal.SIGTERM)
            return True
        return False
    code, out, logs, hung = _launch(tmp, "A", run, cache, act=sigterm_rank1, after_act=120)
    legs["A"] = dict(code=code, hung=hung, out=out, logs=logs, meta=read_meta(run / "last.ckpt"), ckpt_copy=out / "last.ckpt")
    shutil.copyfile(run / "last.ckpt", out / "last.ckpt")

    start_b = legs["A"]["meta"]["global_step"]

    def stop_file(out):
        if _logged_step(run) >= start_b + 3:
            (run / STOP_FILE).touch()
            return True
        return False
    code, out, logs, hung = _launch(tmp, "B", run, cache, extra=["--resume"], act=stop_file, after_act=120)
    legs["B"] = dict(code=code, hung=hung, out=out, logs=logs, meta=read_meta(run / "last.ckpt"),
                     stop_left=(run / STOP_FILE).exists())

    start_c = legs["B"]["meta"]["global_step"]
    (run / STOP_FILE).touch()  # stale: there before the start
    seen = {}

    def kill_all(out):
        if _logged_step(run) >= start_c + 3 and _pid(out, 0) and _pid(out, 1):
            seen["logged"] = _logged_step(run)
            for r in (0, 1):
                os.kill(_pid(out, r), signal.SIGKILL)
            return True
        return False
    code, out, logs, hung = _launch(tmp, "C", run, cache, extra=["--resume"], act=kill_all, after_act=60)
    legs["C"] = dict(code=code, hung=hung, out=out, logs=logs, meta=read_meta(run / "last.ckpt"), logged=seen.get("logged"))
    (run / STOP_FILE).unlink()

    code, out, logs, hung = _launch(tmp, "D", run, cache, extra=["--resume"])
    if _exits(out) != ["0", "0"]:
        _fail(f"the last resume: msrun {code}, workers {_exits(out)}", logs)
    legs["D"] = dict(out=out, logs=logs)
    return dict(legs=legs, run=run, ref=ref, starts=(start_b, start_c), cache=cache)


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_both_after_the_same_step(chain):
    a = chain["legs"]["A"]
    lines = {name: _stop_lines(log) for name, log in a["logs"].items()}
    step = a["meta"]["global_step"]
    assert lines == {"worker_0.log": [(str(step), "SIGTERM on rank 1")],
                     "worker_1.log": [(str(step), "SIGTERM on rank 1")]}, a["logs"]
    assert 4 <= step < TOTAL  # (the signal went out once 4 steps were logged)
    assert "received SIGTERM" in a["logs"]["worker_1.log"] and "received SIGTERM" not in a["logs"]["worker_0.log"]
    assert [(a["out"] / f"exit_{r}").read_text() for r in (0, 1)] == ["143", "143"]  # the same code, both
    assert not a["hung"]  # both workers returned from train.py's main and exited


@pytest.mark.slow
def test_a_stop_file_stops_both_ranks_and_is_removed(chain):
    b, (start_b, _) = chain["legs"]["B"], chain["starts"]
    step = b["meta"]["global_step"]
    assert step >= start_b + 3
    for name in ("worker_0.log", "worker_1.log"):
        found = _stop_lines(b["logs"][name])
        assert len(found) == 1 and found[0][0] == str(step), (name, found)
        assert re.fullmatch(r"STOP file on ranks? (0|1|0, 1)", found[0][1]), found
    assert [(b["out"] / f"exit_{r}").read_text() for r in (0, 1)] == ["0", "0"] and not b["hung"]
    assert not b["stop_left"]  # removed once honoured: --resume continues


@pytest.mark.slow
def test_kill_9_of_every_worker_loses_at_most_the_interval(chain):
    c, (_, start_c) = chain["legs"]["C"], chain["starts"]
    assert c["code"] != 0 and not c["hung"]  # (msrun reports the killed workers, or its scheduler waited: killed)
    assert not (c["out"] / "exit_0").exists()
    assert "was there before this start: ignored" in c["logs"]["worker_0.log"]
    assert _stop_lines(c["logs"]["worker_0.log"]) == []  # the stale STOP file stopped nothing
    step = c["meta"]["global_step"]
    assert step > start_c and step >= c["logged"] - 1  # train.checkpoint_interval=1: at most one step lost
    events = [json.loads(x) for x in (chain["run"] / "metrics.jsonl").read_text().splitlines() if '"checkpoint"' in x]
    assert any(e["iter"] != 0 and e["epoch"] * STEPS_PER_EPOCH + e["iter"] > start_c for e in events)  # mid-epoch


@pytest.mark.slow
def test_the_chain_ends_bit_identical_to_an_uninterrupted_run(chain):
    from mindspore import load_checkpoint

    from mindyolox.training.checkpoint import read_meta
    ref, got = chain["ref"] / "last.ckpt", chain["run"] / "last.ckpt"
    assert read_meta(ref)["global_step"] == read_meta(got)["global_step"] == TOTAL
    cr, cg = load_checkpoint(str(ref)), load_checkpoint(str(got))
    names = sorted(k for k in cr if k != "meta_json")
    assert names == sorted(k for k in cg if k != "meta_json")
    assert any(".moving_mean" in k for k in names) and any(k.startswith("optimizer/momentum/") for k in names)
    for k in names:
        np.testing.assert_array_equal(cg[k].asnumpy(), cr[k].asnumpy(), err_msg=k)


@pytest.mark.slow
def test_bn_statistics_in_last_ckpt_are_every_ranks_with_no_eval(chain):
    from mindspore import load_checkpoint
    for leg, run in (("R", chain["ref"]), ("A", chain["run"])):
        out = chain["legs"][leg]["out"]
        ranks = [dict(np.load(out / f"bn_{r}.npz")) for r in (0, 1)]
        assert sorted(ranks[0]) == sorted(ranks[1]) and len(ranks[0]) > 100
        # A: its last.ckpt is the stop's (the run went on from it in B); R: the end's
        ckpt = load_checkpoint(str(chain["legs"]["A"]["ckpt_copy"] if leg == "A" else run / "last.ckpt"))
        for k in ranks[0]:
            np.testing.assert_array_equal(ranks[0][k], ranks[1][k], err_msg=(leg, k))
            np.testing.assert_array_equal(ckpt[k if k.startswith("ema.") else "model." + k].asnumpy(), ranks[0][k],
                                          err_msg=(leg, k))


@pytest.mark.slow
def test_no_exchange_takes_a_place_in_the_graph_cache(chain):
    # Every launch shares one cache folder, which MindSpore keys by compile order. The rank
    # exchanges (stop agreement, loss statistics, BN average, weight broadcast) happen in an
    # order that depends on where a launch starts and stops; compiled as graphs they took
    # places there, and a later launch loaded one exchange's graph in another's place (a stop
    # nobody asked for, then a reshape error in the BN average). As single operators they
    # take none: the folder holds the step's and the EMA update's graphs (MBs) only.
    graphs = sorted(chain["cache"].glob("*/rank_*/graph_cache/*.mindir"))
    assert graphs and {g.parent.parent.name for g in graphs} == {"rank_0", "rank_1"}
    small = [(g.name, g.stat().st_size) for g in graphs if g.stat().st_size < 100_000]
    assert not small, small


@pytest.mark.slow
def test_negative_control_without_the_agreement_hangs_or_disagrees(tmp_path, chain):
    run = tmp_path / "run"

    def sigterm_rank1(out):
        if _logged_step(run) >= 4 and _pid(out, 1):
            os.kill(_pid(out, 1), signal.SIGTERM)
            return True
        return False
    code, out, logs, hung = _launch(tmp_path, "N", run, chain["legs"]["R"]["out"].parent / "cache",
                              act=sigterm_rank1, after_act=30, env={"MINDYOLOX_TEST_NO_AGREEMENT": "1"})
    lines = [_stop_lines(logs.get(f"worker_{r}.log", "")) for r in (0, 1)]
    assert lines[1], logs  # rank 1 did take the signal
    assert hung or lines[0] != lines[1], (code, lines)
