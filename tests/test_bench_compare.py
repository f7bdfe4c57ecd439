"""bench/compare.py's and bench/check_job.py's bookkeeping: case parsing, override mapping,
the evaluated epochs and the side-by-side tables (ratios per round, their median and spread;
per-seed AP means and spreads; no ratio without the official side). The timing and training
themselves are benchmarks, not tests."""
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench_module(name):
    return importlib.import_module(f"bench.{name}")  # the bench is a package run from the repository root


@pytest.fixture(scope="module")
def compare():
    return _bench_module("compare")


def rec(ms, first=1.0, peak=1.0):
    return {"median_ms": ms, "first_s": first, "peak_gb": peak}


def test_parse_case(compare):
    assert compare.parse_case("train:s:320:4") == ("train", "s", 320, 4)
    with pytest.raises(SystemExit, match="kind:variant:size:batch"):
        compare.parse_case("fit:s:320:4")
    with pytest.raises(SystemExit, match="got 's:320'"):
        compare.parse_case("s:320")


def test_table_ratio_is_median_of_per_round_ratios(compare):
    case = "train:s:320:4"
    ours = {case: [rec(300, 20.0, 2.5), rec(200, 22.0, 2.4), rec(330, 21.0, 2.6)]}
    official = {case: [rec(100), rec(100), rec(110, peak=1.1)]}
    row = compare.table([case], ours, official).splitlines()[2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    # per round 3.00, 2.00, 3.00 -> median 3.00, spread 2.00..3.00 (not 300/100 of the medians)
    assert cells[:3] == [case, "300", "100"]
    assert cells[3].startswith("3.00") and "not met" in cells[3]
    assert cells[4] == "2.00..3.00"
    assert cells[5] == "2.60 / 1.10" and cells[6] == "21.0 / 1.0"


def test_table_without_official_has_no_ratio(compare):
    case = "eval:nano:416:1"
    row = compare.table([case], {case: [rec(80)]}, None).splitlines()[2]
    assert "not measured" in row and "1.00" not in row.split("|")[4]


def test_table_before_and_after_pairs_each_side_with_its_own_official_round(compare):
    case = "eval:s:640:1"
    official = {case: [rec(100), rec(200), rec(100)]}
    ours = {case: [rec(110, 5.0, 1.0), rec(220, 6.0, 1.2), rec(120, 7.0, 1.1)]}
    before = {case: [rec(150, 9.0, 2.0), rec(280, 9.0, 2.0), rec(160, 9.0, 2.0)]}
    cells = [c.strip() for c in compare.table([case], ours, official, before).splitlines()[2].strip("|").split("|")]
    # per round ours 1.10, 1.10, 1.20; before 1.50, 1.40, 1.60 (each over the same round's official)
    assert cells[:2] == [case, "160"] and cells[2] == "1.50 (1.40..1.60)"
    assert cells[3] == "120" and cells[4] == "1.10 (1.10..1.20)" and cells[5] == "100"
    assert cells[6] == "2.00 / 1.20 / 1.00" and cells[7] == "9.0 / 6.0 / 1.0"


# --------------------------------------------------------------------------- check_job.py
@pytest.fixture(scope="module")
def job():
    return _bench_module("check_job")


def test_job_overrides_map_to_the_official_exp(job):
    assert job.official_opts(["train.basic_lr_per_img=0.002", "aug.flip_prob=0.0", "data.max_labels=8"]) == [
        "basic_lr_per_img", "0.002", "flip_prob", "0.0", "max_labels", "8"]
    with pytest.raises(SystemExit, match="data.input_size: no counterpart"):
        job.official_opts(["data.input_size=[96,96]"])
    with pytest.raises(SystemExit, match="section.key=value"):
        job.official_opts(["basic_lr_per_img=0.002"])


def test_job_passes_every_recipe_value_that_differs_from_the_official_exp(job, tmp_path):
    from mindyolox import load_config
    from tests.conftest import shared_path
    exp = job.exp_values(shared_path("anchors", "official-yolox", "demo_job", "yolox_nano_demo_exp.py"))
    assert exp["max_labels"] == 16 and exp["mosaic_scale"] == (0.5, 1.5) and "output_dir" not in exp
    demo = ROOT / "configs" / "demo" / "yolox-nano-demo.yaml"
    expect = [] if exp["basic_lr_per_img"] == load_config(demo).train.basic_lr_per_img else \
        ["basic_lr_per_img", str(load_config(demo).train.basic_lr_per_img)]
    assert job.recipe_opts(load_config(demo), exp) == expect  # everything else already agrees
    cfg = load_config(demo, ["train.max_epoch=20", "aug.flip_prob=0.0", "data.max_labels=8"])
    opts = job.recipe_opts(cfg, exp)
    assert dict(zip(opts[::2], opts[1::2])) == dict(zip(expect[::2], expect[1::2]), max_epoch="20", flip_prob="0.0",
                                                    max_labels="8")
    with pytest.raises(SystemExit, match="ema: .*a bool cannot"):
        job.recipe_opts(load_config(demo, ["train.ema=false"]), exp)


def test_job_eval_epochs_follow_the_trainer(job):
    from types import SimpleNamespace
    t = SimpleNamespace(max_epoch=10, eval_interval=5, no_aug_epochs=1)
    assert job.eval_epochs(t) == [5, 9, 10]  # the official eval_interval = 1 from the no-aug switch on
    assert job.eval_epochs(SimpleNamespace(max_epoch=300, eval_interval=10, no_aug_epochs=15))[-17:-15] == [280, 285]


def _job_result(side, seed, ap10, wall=100.0, step=0.2):
    return {"side": side, "seed": seed, "wall_s": wall, "mean_step_s": step,
            "evals": {5: (ap10 - 20, ap10), 10: (ap10, ap10 + 25)},
            "parts": {"start": 5.0, "compile": 0.0, "steps": wall - 20, "eval": 10.0, "checkpoints+other": 5.0}}


def test_job_summary_means_spreads_and_ratio(job):
    results = [_job_result("official", 0, 50.0), _job_result("official", 1, 54.0),
               _job_result("ours", 0, 51.0, wall=150.0, step=0.3), _job_result("ours", 1, 52.0, wall=150.0, step=0.3),
               {"side": "ours", "seed": 2, "error": "exit 1, log x: boom"}]
    summary = job.summarize(results, [5, 10])
    assert summary["official"]["ap"][10]["mean"] == (52.0, 77.0)
    assert summary["official"]["ap"][10]["spread"] == (4.0, 4.0)
    assert summary["ours"]["seeds"] == [0, 1]  # the failed job is left out of the means
    text = job.table(results, summary, [5, 10])
    assert "ours - official, mean AP50:95 / AP50: epoch 5: -0.50 / -0.50; epoch 10: -0.50 / -0.50" in text
    assert "wall-time ratio ours / official: 1.50 (mean step 1.50)" in text
    assert "FAILED: exit 1, log x: boom" in text


def test_job_finetune_exp_loads_the_weights_the_official_way(job, tmp_path):
    import ast
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    path = job.finetune_exp(weights, tmp_path)
    tree = ast.parse(path.read_text())  # valid Python for the anchor venv
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {"load_ckpt", "Exp"} <= imports
    assert str(weights.resolve()) in path.read_text() and str(job.OFFICIAL_EXP.parent) in path.read_text()
    with pytest.raises(SystemExit, match="--weights .*nope.pth: no such file"):
        job.main(["--sides", "ours", "--weights", str(tmp_path / "nope.pth"), "--work", str(tmp_path / "w")])
