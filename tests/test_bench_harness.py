"""bench/harness.py (issue 34, part 5): one harness for every bench script -- timed calls
(first call apart, warm-up untimed, median / spread), peak RSS one way (the process's own
VmHWM, not its parent's), one process per case with a JSON record of one schema, command
lines timed and killed at their limit; every script on it, run as ``python -m bench.NAME``,
no ``sys.path`` patching, no Python code in string templates. No MindSpore work here."""
import ast
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import harness

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "bench").glob("*.py")
                 if p.name not in ("__init__.py", "harness.py", "conv_candidates.py", "official_finetune_exp.py"))
SCHEMA = {"case", "cpu", "cpu_flags", "cores", "versions", "times_s", "median_s", "min_s", "max_s", "first_s", "peak_rss_mb",
          "extra"}


def test_timed_separates_the_first_call_and_skips_the_warmup():
    calls = []

    def fn():
        calls.append(len(calls))
        return len(calls)
    t = harness.timed(fn, 3, warmup=2)
    assert len(calls) == 1 + 2 + 3 and t.result == 6
    assert t.first_s is not None and len(t.times_s) == 3
    assert t.min_s <= t.median_s <= t.max_s and t.spread() >= 0
    t = harness.timed(fn, 2, warmup=0, first=False)
    assert t.first_s is None and len(t.times_s) == 2 and len(calls) == 8
    seconds, result = harness.once(lambda: 41 + 1)
    assert result == 42 and seconds >= 0


def test_record_has_the_one_schema():
    r = harness.record("x:1", harness.Timing(2.0, [0.3, 0.1, 0.2], None), loss=1.5)
    assert set(r) == SCHEMA
    assert r["median_s"] == 0.2 and (r["min_s"], r["max_s"], r["first_s"]) == (0.1, 0.3, 2.0)
    assert r["extra"] == {"loss": 1.5} and r["cpu"] and r["versions"]["python"]
    assert isinstance(r["cpu_flags"], list) and all(f.startswith(("avx", "fma", "amx", "sse4", "f16c")) for f in r["cpu_flags"])
    assert r["peak_rss_mb"] > 10  # this interpreter's VmHWM, MiB
    json.dumps(r)


def test_a_case_reports_its_own_peak_not_its_parents():
    """The parent holds 400 MiB more than the case ever does: the case's peak RSS is below
    the parent's and covers what it allocated (``ru_maxrss`` of a child started by this
    parent would carry the parent's peak over ``exec``)."""
    held = b"\x01" * (400 * 2**20)
    parent = harness.peak_rss_mb()
    r = harness.run_case("harness", "allocate", {"mb": 60})
    assert set(SCHEMA) <= set(r) and r["case"] == "allocate:60" and r["extra"]["size"] == 60 * 2**20
    assert 60 < r["peak_rss_mb"] < parent - 300, (r["peak_rss_mb"], parent)
    assert r["wall_s"] > 0
    del held


def test_a_failing_case_is_one_line_with_its_stderr_kept():
    with pytest.raises(harness.CaseError, match=r"case harness.nope: exit code 2: error: no case 'nope'") as e:
        harness.run_case("harness", "nope")
    assert "no case" in e.value.detail()


def test_a_command_line_is_timed_and_killed_with_its_group_at_the_limit(tmp_path):
    child = tmp_path / "child.pid"
    code = f"import os, subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; " \
           f"time.sleep(60)']); open({str(child)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    run = harness.run_process([sys.executable, "-c", code], timeout=1.5)
    assert run.timed_out and run.rc is None and run.wall_s < 10
    grandchild = int(child.read_text())
    for pid in (run.pid, grandchild):  # the program and what it started
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0) if pid == run.pid else _wait_gone(pid)
    ok = harness.run_process([sys.executable, "-c", "print('hi')"])
    assert ok.rc == 0 and ok.stdout.strip() == "hi" and not ok.timed_out
    log = tmp_path / "log"
    bad = harness.run_process([sys.executable, "-c", "import sys; print('out'); sys.exit('boom')"], log=log)
    assert bad.rc == 1 and "out" in log.read_text() and "boom" in log.read_text()


def _wait_gone(pid):
    """Raise ProcessLookupError once ``pid`` is gone (a killed grandchild is reaped by init)."""
    import time
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                raise ProcessLookupError(pid)
        time.sleep(0.05)


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_every_bench_script_runs_on_the_harness(path):
    text = path.read_text()
    tree = ast.parse(text)
    assert "sys.path" not in text, f"{path.name} patches sys.path"
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("bench", "harness") in imports, f"{path.name} does not use bench.harness"
    assert "harness.main(main)" in text, f"{path.name} has no harness entry (python -m bench.{path.stem})"
    own = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in ("perf_counter", "getrusage")]
    own += [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == "/proc/self/status"]
    assert not own, f"{path.name} times or measures memory itself: {own}"
    for node in ast.walk(tree):  # no Python source in a string (run with -c or written to a file)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "\n" in node.value:
            assert not re.search(r"^\s*(import |from \S+ import |def |class )", node.value, re.M) or \
                node is tree.body[0].value, f"{path.name}: Python code in a string"
    importlib.import_module(f"bench.{path.stem}")  # a module of the bench package


def test_acceptance_checks_are_named_as_such():
    names = {p.stem for p in SCRIPTS}
    assert {"check_device", "check_job"} <= names and "compare_job" not in names


def test_a_script_runs_as_a_module_from_the_root():
    p = subprocess.run([sys.executable, "-m", "bench.compare", "--cases", "fit:s:1:1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "error: a case is kind:variant:size:batch" in p.stderr


def test_docs_run_the_bench_as_modules():
    pages = [ROOT / "README.md", ROOT / "deploy" / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    for page in pages:
        if page.name == "changelog.md":
            continue
        text = page.read_text()
        assert not re.search(r"python3? bench/", text), f"{page}: python bench/x.py instead of python -m bench.x"
        assert "compare_job" not in text.replace("`bench/compare_job.py` before", "").replace(
            "`bench/compare_job.py` is now", ""), page
