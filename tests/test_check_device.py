"""bench/check_device.py on CPU (issue 24, deliverable 8): its JSON verdict says the sink
check cannot run here and why, and the checks that can run on CPU run and pass; the check
fails when one batch is perturbed (``--corrupt-step``), at that step and not before; the
SimOTA comparison passes ties and fails an exchange between unequal costs.

nano on a 10-image demo dataset at 160 px, batch 2: 4 steps, stopped after 2 and resumed.
The corrupted call reuses the first call's runs (``--reuse``) and reruns only the resumed
part, so one training graph is compiled (the runs share the check's compile cache).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check(work, *extra):
    out = work / f"verdict{len(extra)}.json"
    cmd = [sys.executable, "-m", "bench.check_device", "--device", "CPU", "--steps", "4",
           "--resume-at", "2", "--size", "160", "--random-size", "5", "5", "--batch", "2", "--workdir", str(work),
           "--reuse", "--timeout", "150", "--budget", "400", "--json", str(out), *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=500, cwd=ROOT)
    assert out.is_file(), p.stdout + p.stderr
    return p.returncode, json.loads(out.read_text()), p.stdout


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    work = tmp_path_factory.mktemp("check_device")
    good = _check(work)
    bad = _check(work, "--corrupt-step", "3", "--checks", "resume")
    return work, good, bad


@pytest.mark.slow  # the check's runs: three trainings and two SimOTA runs, in subprocesses
def test_cpu_verdict_skips_sink_and_passes_the_rest(verdicts):
    _, (code, v, out), _ = verdicts
    assert code == 0, out
    assert v["ok"] is True and v["device"] == "CPU"
    sink = v["checks"]["sink_equality"]
    assert sink["status"] == "skipped" and "data sink refused on CPU" in sink["reason"]
    res = v["checks"]["resume"]
    assert res["status"] == "pass", res
    f = res["figures"]
    assert f["before_stop"]["steps"] == [0, 1] and f["after_resume"]["steps"] == [2, 3]
    assert f["resumed_first_step"] == 2
    for part in ("before_stop", "after_resume"):
        assert f[part]["mismatched_steps"] == [] and f[part]["max_loss_rel_diff"] <= 1e-6
        assert all(np.isfinite(f[part]["losses"]["this"]))
    sim = v["checks"]["simota"]
    assert sim["status"] == "pass", sim
    assert sim["figures"]["fg_cpu"] > 0 and sim["figures"]["unexplained"] == []
    assert {v["runs"][r]["status"] for r in ("plain", "stopped", "resumed", "simota_cpu", "simota_device")} == {"ok"}


@pytest.mark.slow  # the check's runs: three trainings and two SimOTA runs, in subprocesses
def test_a_perturbed_batch_fails_the_check_at_that_step(verdicts):
    _, _, (code, v, out) = verdicts
    assert code == 1, out
    assert v["ok"] is False and list(v["checks"]) == ["resume"]
    res = v["checks"]["resume"]
    assert res["status"] == "fail" and "differ" in res["reason"]
    after = res["figures"]["after_resume"]
    assert after["mismatched_steps"] == [3]           # step 2 still equal: the probe sees per step
    assert after["max_checksum_rel_diff"] > 1e-3 and after["max_loss_rel_diff"] > 0
    assert v["runs"]["plain"]["status"] == "reused" and v["runs"]["resumed"]["status"] == "ok"


@pytest.mark.slow  # the check's runs: three trainings and two SimOTA runs, in subprocesses
def test_simota_comparison_passes_ties_and_fails_unequal_exchanges(verdicts):
    from bench.check_device import compare_simota
    work = verdicts[0]
    cpu = dict(np.load(work / "simota_cpu.npz"))
    ok, f = compare_simota(cpu, {k: v.copy() for k, v in cpu.items()}, 1e-3)
    assert ok and f["gt_selection_diff"] == 0
    # move one selected anchor of a gt to an unselected candidate of higher cost: unexplained
    b, g = map(int, np.argwhere(cpu["matching"].any(2))[0])
    usable = cpu["candidate"][b] & ~cpu["matching"][b, g]
    sel, other = np.flatnonzero(cpu["matching"][b, g])[0], np.flatnonzero(usable)[0]
    dev = {k: v.copy() for k, v in cpu.items()}
    dev["matching"][b, g, sel], dev["matching"][b, g, other] = False, True
    ok, f = compare_simota(cpu, dev, 1e-3)
    assert not ok and f["gt_selection_diff"] == 1 and len(f["unexplained"]) == 1
    # the same exchange between equal costs is a tie
    cpu_tie = {k: v.copy() for k, v in cpu.items()}
    cpu_tie["cost"][b, g, other] = cpu_tie["cost"][b, g, sel]
    cpu_tie["in_both"][b, g, other] = cpu_tie["in_both"][b, g, sel]
    ok, f = compare_simota(cpu_tie, dev, 1e-3)
    assert ok and f["explained_by_ties"] == 1


def test_a_run_over_its_time_limit_is_killed_and_fails_its_check(tmp_path):
    """``--timeout 2``: the SimOTA subprocess (importing MindSpore alone takes longer) is
    killed with its process group; the check fails with the reason, the verdict is written."""
    out = tmp_path / "v.json"
    cmd = [sys.executable, "-m", "bench.check_device", "--device", "CPU", "--checks", "simota",
           "--timeout", "2", "--workdir", str(tmp_path / "w"), "--json", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 1, p.stdout + p.stderr
    v = json.loads(out.read_text())
    sim = v["checks"]["simota"]
    assert sim["status"] == "fail" and "no result within 2 s (killed)" in sim["reason"]
    run = v["runs"]["simota_cpu"]
    assert run["status"] == "timeout" and run["seconds"] < 10
    with pytest.raises(ProcessLookupError):
        os.kill(run["pid"], 0)  # killed and reaped
