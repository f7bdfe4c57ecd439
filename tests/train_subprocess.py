"""One ``Trainer`` run in a fresh Python process, for tests that train the same recipe twice.

Why: MindSpore caches graphs **by position** in a process (the n-th graph compiled is
``compile_cache_<n>.mindir``; mindyolox/runtime/compile_cache.py), so a second Trainer in
the pytest process compiles again (its train step is graph 2, not graph 0) -- measured in
tests/test_resume.py: four runs, four 45-64 s compiles. A fresh process starts at graph 0
and loads what the first one saved (the train step in ~5-10 s instead of ~60 s).

Parent side: :func:`train_in_subprocess` (returns the JSON the child wrote). Child side:
``python -m tests.train_subprocess SPEC.json``; SPEC: ``cfg_args`` / ``cfg_kwargs`` for
``tests.test_train.coco16_cfg``, ``trainer`` (keyword arguments of ``Trainer``; ``run_dir``
and ``compile_cache`` are paths), ``sigterm_at`` (optional: the global step after which the
process sends itself SIGTERM, so the trainer's own handler saves), ``out`` (the JSON to write:
status, start_iter, the lr of every step of the schedule, compiled_graphs, host_reads, and whether the
SIGTERM handler was removed after the run).
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_in_subprocess(spec, work, timeout=900, ms_cache=None):
    """Run ``spec`` (dict, see the module doc; ``out`` is set here) in a child process and
    return its result dict; a failing child fails the test with its output's tail.
    ``ms_cache``: a folder given to MindSpore itself (``MS_COMPILER_CACHE_ENABLE/PATH``), for
    runs whose recipes differ only in keys that never reach a graph (the trainer's own
    ``compile_cache`` keys its folder by the whole recipe); pass ``compile_cache=None`` then."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    n = len(list(work.glob("spec*.json")))
    spec = dict(spec, out=str(work / f"result{n}.json"))
    spec_path = work / f"spec{n}.json"
    spec_path.write_text(json.dumps(spec, default=str))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MS_COMPILER_CACHE")}
    if ms_cache is not None:
        env.update(MS_COMPILER_CACHE_ENABLE="1", MS_COMPILER_CACHE_PATH=str(ms_cache))
    p = subprocess.run([sys.executable, "-m", "tests.train_subprocess", str(spec_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0 or not Path(spec["out"]).is_file():
        raise AssertionError(f"training subprocess exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return json.loads(Path(spec["out"]).read_text())


def main(spec_path):
    import mindspore as ms

    from mindyolox.training.trainer import TrainHook, Trainer
    from tests.test_train import coco16_cfg

    spec = json.loads(Path(spec_path).read_text())
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    kw = dict(spec.get("trainer", {}))
    for key in ("run_dir", "compile_cache"):
        if kw.get(key) is not None:
            kw[key] = Path(kw[key])
    hooks = []
    if spec.get("sigterm_at") is not None:
        stop_at = int(spec["sigterm_at"])

        class _Sigterm(TrainHook):
            def after_iter(self, trainer):
                if trainer.progress_in_iter == stop_at:
                    os.kill(os.getpid(), signal.SIGTERM)
        hooks.append(_Sigterm())
    tr = Trainer(coco16_cfg(*spec.get("cfg_args", []), **spec.get("cfg_kwargs", {})), hooks=hooks, **kw)
    status = tr.train()
    total = int(tr.max_epoch) * int(tr.steps_per_epoch)
    Path(spec["out"]).write_text(json.dumps(dict(
        status=status, start_iter=int(tr.start_iter), lr=[float(tr.lr_schedule(k)) for k in range(total)],
        compiled_graphs=int(tr.step.compiled_graphs), host_reads=int(tr.host_reads),
        sigterm_default_after=signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)))


if __name__ == "__main__":
    main(sys.argv[1])
