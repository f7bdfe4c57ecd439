"""bench/compare.py's bookkeeping: case parsing and the side-by-side table (ratios per
round, their median and spread; no ratio without the official side). The timing itself
is a benchmark, not a test."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("bench_compare", ROOT / "bench" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
