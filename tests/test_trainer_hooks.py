"""Issue 34, the trainer as a loop with built-in hooks: the order of the hooks is the table in
the trainer's module docstring, a user hook is called exactly as the built-ins are, and every
process resource is released once on every end. Fast: the parts are stand-ins (no model, no
compile); the built-in hooks are recorded instead of run."""
import os
import signal

import pytest

from mindyolox.config import load_config
from mindyolox.training import trainer as T
from mindyolox.training.hooks import NORMAL, POINTS, TrainHook, builtin_hooks

from .conftest import ROOT

DEMO = ROOT / "configs" / "demo" / "yolox-nano-demo.yaml"


def _table():
    """``[(name, priority)]`` of the hook table in the trainer's module docstring."""
    lines = T.__doc__.splitlines()
    rules = [i for i, x in enumerate(lines) if x.startswith("=====")]
    cols = [len(c) for c in lines[rules[0]].split("  ")]  # the column widths of the RST table
    rows = []
    for x in lines[rules[1] + 1:rules[2]]:
        if x and not x[0].isspace():
            name, prio = x[:cols[0]].strip(), x[cols[0] + 2:cols[0] + 2 + cols[1]].strip()
            rows.append((name, prio))
    return rows


def test_the_docstring_table_is_the_order_of_the_built_in_hooks():
    rows = [(n, p) for n, p in _table() if not n.startswith("(")]
    builtin = builtin_hooks()
    want = [(type(h).__name__, str(h.priority)) for h in builtin]
    user_at = [i for i, (n, _) in enumerate(rows) if n == "user hooks"]
    assert len(user_at) == 1 and rows[user_at[0]][1] == str(NORMAL) == "50"
    assert rows[:user_at[0]] + rows[user_at[0] + 1:] == want
    prios = [h.priority for h in builtin]
    assert prios == sorted(prios) and len(set(prios)) == len(prios)
    assert sum(p < NORMAL for p in prios) == user_at[0]  # the user row sits where 50 falls


class _Recorder(TrainHook):
    """Records every call as ``(name, point, epoch, iter)`` into a shared list."""

    def __init__(self, name, priority, calls, fail_at=None):
        self.name, self.priority, self.calls, self.fail_at = name, priority, calls, fail_at

    def _rec(self, point, tr):
        self.calls.append((self.name, point, tr.epoch, tr.iter))
        if self.fail_at == point:
            raise RuntimeError(f"{self.name} fails at {point}")


for _p in POINTS[1:]:
    setattr(_Recorder, _p, (lambda p: lambda self, tr: self._rec(p, tr))(_p))


def _wrap(self, tr, step):
    self.calls.append((self.name, "wrap_step", None, None))
    return step


_Recorder.wrap_step = _wrap


class _Feeder:
    """Stands in for StepFeeder: counts opens and closes."""
    opened = closed = 0
    calls = None

    def __init__(self, step, loader, sink=False):
        type(self).opened += 1
        self.sink = sink
        _Feeder.calls.append(("(trainer)", "feeder opened", None, None))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        type(self).closed += 1
        return False

    def run(self, n, size):
        return 0.0


def _parts():
    from types import SimpleNamespace as NS
    stats = NS(asnumpy=lambda: None)
    step = NS(set_use_l1=lambda on: None, stats=stats, use_ema=False, ema_graph=False)
    loader = NS(steps_per_epoch=3, batch_size=2, interval=10, size_at=lambda k: (64, 64), dataset=None)
    return NS(model=None, net=None, ema_model=None, loader=loader, lr_schedule=None, optimizer=NS(params=[]),
              step=step, evaluator=None, weights_report=None, bn_note=None, frozen=None)


@pytest.fixture
def stand_ins(monkeypatch):
    calls = []
    _Feeder.opened = _Feeder.closed = 0
    _Feeder.calls = calls
    monkeypatch.setattr(T, "build_training", lambda *a, **k: _parts())
    monkeypatch.setattr(T, "StepFeeder", _Feeder)
    return calls


def _trainer(tmp_path, calls, fail=None, **kw):
    cfg = load_config(DEMO, ["data.data_dir=unused", "train.max_epoch=2", "train.print_interval=2"])
    tr = T.Trainer(cfg, run_dir=tmp_path / "run", progress=False, num_workers=0, **kw)
    tr.builtin_hooks = [_Recorder(type(h).__name__, h.priority, calls, fail_at=fail if type(h).__name__ ==
                                  "CheckpointHook" else None) for h in tr.builtin_hooks]
    tr.hooks.append(_Recorder("user", NORMAL, calls))
    return tr


def test_a_user_hook_gets_the_same_calls_as_the_built_ins_in_table_order(tmp_path, stand_ins):
    calls = stand_ins
    old = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    tr = _trainer(tmp_path, calls, max_iters=4)
    assert tr.train() == "stopped"
    names = [type(h).__name__ for h in builtin_hooks()]
    order = [n for n, _ in _table() if n != "(trainer)"]
    order[order.index("user hooks")] = "user"
    per_hook = {}
    for name, point, epoch, it in calls:
        per_hook.setdefault(name, []).append((point, epoch, it))
    # one user hook and every built-in see the same points at the same positions of the loop
    # (wrap_step, once each, comes after the before_train of priority <= 10: the table's "(trainer)" row)
    def without_wrap(seq):
        assert seq.count(("wrap_step", None, None)) == 1
        return [c for c in seq if c[0] != "wrap_step"]
    for n in names:
        assert without_wrap(per_hook[n]) == without_wrap(per_hook["user"]), n
    assert [p for p, _, _ in per_hook["user"]] == [
        "wrap_step", "before_train", "before_epoch", "before_iter", "after_iter", "before_iter", "after_iter",
        "after_epoch", "before_epoch", "before_iter", "after_iter", "on_stop", "after_train"]
    # at every point the hooks come in the table's order; the feeder opens after priority 10
    for point in POINTS:
        seq = [n for n, p, _, _ in calls if p == point]
        seen = list(dict.fromkeys(seq))
        assert seen == order, point
    bt = [n for n, p, _, _ in calls if p in ("before_train", "feeder opened")]
    assert bt == ["ResumeHook", "(trainer)", "PrecompileHook", "LoggerHook", "user", "EvalHook", "CheckpointHook",
                  "AnalysisHook", "SummaryHook", "ExperimentHook"]
    assert (_Feeder.opened, _Feeder.closed) == (1, 1)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == old
    assert not (tmp_path / "run" / ".run.lock").exists()


@pytest.mark.parametrize("fail", ["before_train", "after_iter", "after_train"])
def test_every_end_releases_each_resource_once(tmp_path, stand_ins, monkeypatch, fail):
    """An error in a hook before the loop, in it, and at its end: the data queue closed once,
    the signal handlers, the compile-dump environment and the run-folder lock given back."""
    calls = stand_ins
    monkeypatch.delenv("MS_OM_PATH", raising=False)
    old = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    tr = _trainer(tmp_path, calls, fail=fail, max_iters=4)
    seen_env = []
    tr.hooks.append(type("Env", (TrainHook,), {"before_train": lambda self, t: seen_env.append(
        os.environ.get("MS_OM_PATH"))})())
    with pytest.raises(RuntimeError, match=f"CheckpointHook fails at {fail}"):
        tr.train()
    assert (_Feeder.opened, _Feeder.closed) == (1, 1)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == old
    assert not (tmp_path / "run" / ".run.lock").exists()
    assert "MS_OM_PATH" not in os.environ
    if fail != "before_train":
        assert seen_env == [str(tmp_path / "run")]
        assert [p for n, p, _, _ in calls if n == "user"][-1] == "after_train"
        assert tr.status == ("failed" if fail == "after_iter" else "stopped")
