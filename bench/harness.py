"""The one harness of every bench script: timed calls, peak memory, one subprocess per case,
JSON records, running a command line and timing it.

Run a bench script as a module from the repository root (``python -m bench.compare ...``),
never by path: ``bench`` is a package and nothing here patches ``sys.path``.

**Timed calls** (:func:`timed`): the first call is timed on its own (``first_s``: the graph
compile for MindSpore, lazy initialisation for PyTorch), then ``warmup`` untimed calls, then
``repeats`` timed calls; :class:`Timing` gives their median, min, max and spread. Every timing
loop of the bench is this one.

**Peak memory** (:func:`peak_rss_mb`), one way everywhere: the kernel's ``VmHWM`` of the
process (``/proc/<pid>/status``, the high-water mark of its resident set since its last
``exec``), in MiB. A case reads its own at its end; a command line run by :func:`run_process`
has it sampled every ``RSS_POLL_S`` while it runs (a finished process has no ``/proc`` entry,
so growth in its last ~50 ms is not seen). Not ``ru_maxrss``: after ``fork``/``vfork`` +
``exec`` Linux keeps the larger of the parent's and the child's peak in it (``exec_mmap`` folds
the old mm's high-water mark into the process's ``maxrss``), so a child of a large parent
would report the parent's memory. Data-loader workers are other processes and not included.
Without ``/proc`` (not Linux) the value is ``None``.

**One subprocess per case** (:func:`run_case`): a case is a module-level function of a bench
module that returns a dict; ``run_case("bench_train", "train_step", {...})`` runs
``python -m bench.bench_train --case train_step --kwargs '{...}'`` in the repository root, and
the child (:func:`main`, the ``__main__`` entry of every bench script) calls the function,
adds its own peak RSS and prints one ``RESULT {json}`` line, which :func:`run_case` returns.
So each case's peak memory and first call are its own. ``python=`` runs the case with another
interpreter (the official anchor's venv for PyTorch cases: the bench modules import only the
standard library at their top).

**JSON records** (:func:`record`): one schema for every measurement::

    {"case": str, "cpu": str (model name), "cpu_flags": [str] (avx*, fma, amx*, ...), "cores": int,
     "versions": {package: version},
     "times_s": [float] (the timed calls), "median_s", "min_s", "max_s": float | None,
     "first_s": float | None, "peak_rss_mb": float | None, "extra": {...} (case-specific)}

**Command lines** (:func:`run_process`): exit code, wall time, output (or a log file), peak RSS
(sampled VmHWM), with an optional time limit that kills the whole process group.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MINDYOLOX_SHARED", ROOT.parent / "shared"))
RESULT = "RESULT "
RSS_POLL_S = 0.05
VERSION_PACKAGES = ("mindspore", "numpy", "torch", "onnxruntime")


# ============================================================================ timed calls
class Timing:
    """Times of one measured callable, seconds: ``first_s`` (the first call alone, or None),
    ``times_s`` (the timed calls after the warm-up), ``result`` (the last call's return value)."""

    def __init__(self, first_s, times_s, result):
        self.first_s, self.times_s, self.result = first_s, list(times_s), result

    @property
    def median_s(self):
        return statistics.median(self.times_s) if self.times_s else None

    @property
    def min_s(self):
        return min(self.times_s) if self.times_s else None

    @property
    def max_s(self):
        return max(self.times_s) if self.times_s else None

    def spread(self):
        """``(max - min) / median`` of the timed calls (0 for one call, None for none)."""
        if not self.times_s:
            return None
        return (self.max_s - self.min_s) / self.median_s if self.median_s else 0.0

    def ms(self):
        """Median in ms (the figure most tables print)."""
        return 1e3 * self.median_s


def timed(fn, repeats, warmup=1, first=True):
    """Call ``fn()`` (which must finish its work before it returns, e.g. end in ``.asnumpy()``):
    once timed alone when ``first`` (the compile / lazy start), ``warmup`` times untimed, then
    ``repeats`` timed calls (``time.perf_counter``). Returns a :class:`Timing`."""
    result, first_s = None, None
    if first:
        t0 = time.perf_counter()
        result = fn()
        first_s = time.perf_counter() - t0
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return Timing(first_s, times, result)


def once(fn):
    """``(seconds, result)`` of one call of ``fn()`` (a single timed call: a whole evaluation,
    a compile)."""
    t = timed(fn, 0, warmup=0, first=True)
    return t.first_s, t.result


# ============================================================================ memory, machine
def peak_rss_mb(pid="self"):
    """Peak resident memory (``VmHWM``) of process ``pid`` (default: this one), MiB; None when
    the process is gone or ``/proc`` does not exist (module doc: why not ``ru_maxrss``)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    """The vector instruction-set flags of this CPU (``/proc/cpuinfo``: avx*, fma, amx*, ...),
    sorted: what separates the CPU types a benchmark may land on (AVX-512 / AMX or not)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    keep = ("avx", "fma", "amx", "sse4", "f16c")
                    return sorted(x for x in line.split(":", 1)[1].split() if x.startswith(keep))
    except OSError:
        pass
    return []


def cpu_line():
    """``"<model> (<flags>)"``, the CPU a table's figures were measured on."""
    flags = cpu_flags()
    return cpu_model() + (f" ({' '.join(flags)})" if flags else "")


def versions():
    """``{"python": ..., package: version}`` of the installed packages of ``VERSION_PACKAGES``
    (read from their metadata: nothing is imported)."""
    out = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def record(case, timing=None, **extra):
    """The JSON record of one measurement (module doc's schema) with this process's peak RSS;
    ``timing`` a :class:`Timing` (or None), ``extra`` case-specific values."""
    t = timing or Timing(None, [], None)
    return {"case": case, "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "versions": versions(),
            "times_s": t.times_s, "median_s": t.median_s, "min_s": t.min_s, "max_s": t.max_s,
            "first_s": t.first_s, "peak_rss_mb": peak_rss_mb(), "extra": extra}


def write_json(path, data):
    """Write ``data`` (records, or a dict of them) as indented JSON to ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1, default=str))


def load_info():
    """``"load average X on N cores"`` for the header of a table."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


# ============================================================================ processes
class Run:
    """A finished (or killed) command line: ``cmd``, ``rc`` (None when killed), ``wall_s``,
    ``stdout`` / ``stderr`` text (empty when written to a log), ``peak_rss_mb`` (sampled
    VmHWM of the process itself), ``pid``, ``timed_out``."""

    def __init__(self, cmd, rc, wall_s, stdout, stderr, peak, pid, timed_out):
        self.cmd, self.rc, self.wall_s, self.stdout, self.stderr = cmd, rc, wall_s, stdout, stderr
        self.peak_rss_mb, self.pid, self.timed_out = peak, pid, timed_out


def run_process(cmd, timeout=None, env=None, cwd=ROOT, log=None):
    """Run ``cmd`` (a list) in its own session and time it; its output goes to ``log`` (one
    file, stdout and stderr together) or is returned in the :class:`Run`. At ``timeout``
    seconds the whole process group (the program and its workers) is killed with SIGKILL and
    reaped; the Run says ``timed_out``. ``env`` None: Python's ``os.environ``, passed explicitly --
    not the process's C environment, in which an imported MindSpore has set
    ``OMP_NUM_THREADS=1`` (invisible to ``os.environ``): inherited, it made the PyTorch side of
    ``bench_conv.py`` run on one thread."""
    cmd = [str(c) for c in cmd]
    env = dict(os.environ) if env is None else env
    with tempfile.TemporaryDirectory(prefix="bench_run_") as tmp:
        out_path = Path(log) if log else Path(tmp) / "stdout"
        err_path = None if log else Path(tmp) / "stderr"
        with open(out_path, "w") as out, (open(err_path, "w") if err_path else out) as err:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if log else err, env=env, cwd=cwd,
                                 start_new_session=True, text=True)
            peak, timed_out = None, False
            while p.poll() is None:
                now = peak_rss_mb(p.pid)
                peak = now if peak is None or (now is not None and now > peak) else peak
                if timeout is not None and time.perf_counter() - t0 > timeout:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    timed_out = True
                    break
                time.sleep(RSS_POLL_S)
            wall = time.perf_counter() - t0
        stdout = "" if log else out_path.read_text(errors="replace")
        stderr = "" if log else err_path.read_text(errors="replace")
    return Run(cmd, None if timed_out else p.returncode, wall, stdout, stderr, peak, p.pid, timed_out)


def _user_errors(script_main, argv):
    """``script_main(argv)``'s exit code; a ``MindYOLOXError`` (bad input) is one ``error: ...``
    line and exit code 2, Ctrl-C exit code 130 (as ``mindyolox.commands._args.run_cli``). mindyolox
    is imported only when such an error occurs, so the harness runs without it (anchor venv)."""
    try:
        return script_main(argv) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not type(e).__module__.startswith("mindyolox"):
            raise
        from mindyolox.errors import MindYOLOXError
        if not isinstance(e, MindYOLOXError):
            raise
        print("error: " + (" ".join(str(e).split()) or type(e).__name__), file=sys.stderr)
        return 2


class CaseError(RuntimeError):
    """A case that failed, gave no ``RESULT`` line or was killed at its time limit; ``run`` is
    its :class:`Run`. ``str()`` is one line; ``detail()`` adds the tail of its stderr."""

    def __init__(self, message, run):
        super().__init__(message)
        self.run = run

    def detail(self):
        return f"{self}\n{self.run.stderr[-3000:]}"


def case_command(module, function, kwargs=None, python=None):
    """The command line of case ``function`` of ``bench.<module>`` (see :func:`run_case`)."""
    return [python or sys.executable, "-m", f"bench.{module}", "--case", function,
            "--kwargs", json.dumps(kwargs or {}, sort_keys=True)]


def run_case(module, function, kwargs=None, python=None, timeout=None, env=None, root=ROOT):
    """Run case ``function(**kwargs)`` of ``bench.<module>`` in its own process (``python``:
    another interpreter; ``root``: the checkout it runs in -- ``python -m`` puts it first on
    ``sys.path``, so another checkout's ``bench`` and ``mindyolox`` are the ones imported) and
    return the dict it returned, with the child's ``peak_rss_mb`` and the process's ``wall_s``
    added when absent. Raises :class:`CaseError`."""
    run = run_process(case_command(module, function, kwargs, python), timeout=timeout, env=env, cwd=root)
    if run.timed_out:
        raise CaseError(f"case {module}.{function}: no result within {timeout:.0f} s (killed)", run)
    lines = [x for x in run.stdout.splitlines() if x.startswith(RESULT)]
    if run.rc or not lines:
        tail = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CaseError(f"case {module}.{function}: exit code {run.rc}: {tail}", run)
    result = json.loads(lines[-1][len(RESULT):])
    if isinstance(result, dict):
        result.setdefault("wall_s", run.wall_s)
    return result


def main(script_main, argv=None):
    """The ``__main__`` entry of every bench script: ``--case NAME --kwargs JSON`` runs the
    module's function ``NAME`` (a case, for :func:`run_case`) and prints its ``RESULT`` line;
    anything else goes to ``script_main(argv)``. Returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] != ["--case"]:
        return _user_errors(script_main, argv)
    p = argparse.ArgumentParser(prog="python -m bench.<script> --case")
    p.add_argument("--case", required=True)
    p.add_argument("--kwargs", default="{}")
    args = p.parse_args(argv)
    fn = getattr(sys.modules["__main__"], args.case, None)
    if not callable(fn):
        print(f"error: no case {args.case!r} in {sys.modules['__main__'].__file__}", file=sys.stderr)
        return 2
    result = fn(**json.loads(args.kwargs))
    if isinstance(result, dict):
        result.setdefault("peak_rss_mb", peak_rss_mb())
    print(RESULT + json.dumps(result), flush=True)
    return 0


# ============================================================================ self-test
def allocate(mb):
    """Case (the harness's self-test, ``tests/test_bench_harness.py``): write ``mb`` MiB and
    return a record (its ``peak_rss_mb`` is this process's, whatever its parent holds)."""
    block = b"\x01" * int(mb * 2**20)  # written, so resident
    return record(f"allocate:{mb}", None, size=len(block))


def _usage(argv):
    print("bench/harness.py is the bench's library; run a bench script: python -m bench.NAME --help",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(_usage))
