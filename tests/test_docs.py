"""The documentation site and the README front page: ``mkdocs build --strict`` passes (no broken
link, anchor or include, every page in the nav), the generated configuration page is current and
agrees with the schema, and every section the README had before the site exists is one click
away from the README.

Link anchors are checked with the slug rule GitHub and mkdocs' ``toc`` share for these headings
(lower case, punctuation dropped, spaces to hyphens), so a README link that works on GitHub is the
anchor the site builds.
"""
import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250

# Every heading of README.md before it became a front page (issue 27), and where it is now.
# A heading that moves again changes here; one that disappears fails the test.
SECTIONS = {
    "Install": "docs/getting-started.md",
    "Quickstart": "README.md",
    "The demo dataset": "docs/getting-started.md",
    "Training on COCO": "docs/training.md",
    "Several devices, several machines": "docs/devices.md",
    "Device choices, mixed precision and the device-resident loop": "docs/devices.md",
    "Custom datasets (COCO and VOC)": "docs/training.md",
    "Fine-tuning from official YOLOX weights": "docs/training.md",
    "Freezing, gradient accumulation, early stopping, TensorBoard": "docs/training.md",
    "Evaluation": "docs/evaluation.md",
    "Prediction": "docs/evaluation.md",
    "Export and deployment": "docs/export.md",
    "Model zoo": "README.md",
    "Configuration": "docs/configuration.md",
    "Configuration reference": "docs/configuration.md",
    "Python API": "docs/api.md",
    "Benchmarks": "docs/benchmarks.md",
    "Side by side with the official code": "docs/benchmarks.md",
    "The whole training job, side by side": "docs/benchmarks.md",
    "Where the time goes": "docs/benchmarks.md",
    "Where the memory goes (nano 416 b8)": "docs/benchmarks.md",
    "Other figures (ours only)": "docs/benchmarks.md",
    "Tests": "docs/contributing.md",
    "Troubleshooting": "docs/troubleshooting.md",
}


def slug(heading):
    """The anchor of a Markdown heading (GitHub's and mkdocs toc's rule for plain-text headings)."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", text).strip("-")


def headings(path):
    """``[(level, text)]`` of the Markdown headings of ``path``, outside fenced code."""
    out, fence = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"^(#{1,6}) (.+?)\s*$", line)):
            out.append((len(m.group(1)), m.group(2)))
    return out


def links(path):
    """Relative Markdown link targets of ``path`` (``file#anchor``), outside fenced code."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


# ----------------------------------------------------------------------------- the README
def test_readme_is_a_front_page_with_every_old_section_one_click_away():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    targets = set()
    for target in links(README):
        file, _, anchor = target.partition("#")
        page = (README.parent / file) if file else README
        assert page.is_file(), f"README.md links to {target}: no such file"
        if anchor:
            assert anchor in {slug(h) for _, h in headings(page)}, f"README.md links to {target}: no such heading"
        targets.add((page.resolve(), anchor))
    readme_headings = {h for _, h in headings(README)}
    for heading, where in SECTIONS.items():
        page = ROOT / where
        assert heading in {h for _, h in headings(page)}, f"'{heading}' is not a heading of {where}"
        if page == README:
            assert heading in readme_headings
        else:  # a link from the README to that heading of that page
            assert (page.resolve(), slug(heading)) in targets, f"README.md does not link to {where}#{slug(heading)}"


def test_each_old_section_is_in_exactly_one_file():
    """A section moved, not copied: its heading is in one file of README.md and docs/ only."""
    files = [README] + sorted(DOCS.rglob("*.md"))
    for heading in SECTIONS:
        holders = [p.relative_to(ROOT).as_posix() for p in files if heading in {h for _, h in headings(p)}]
        assert holders == [SECTIONS[heading]], (heading, holders)


def test_the_site_includes_what_lives_in_the_readme():
    """README sections shown in the site come in through pymdownx.snippets sections, whose
    markers must stand in the README (mkdocs --strict fails on a missing file, not a missing
    section, so this checks the names)."""
    readme = README.read_text()
    wanted = set()
    for page in DOCS.rglob("*.md"):
        wanted |= set(re.findall(r'^--8<-- "README\.md:(\w+)"$', page.read_text(), flags=re.M))
    assert {"quickstart", "zoo", "cite", "why"} <= wanted
    for name in wanted:
        assert readme.count(f"<!-- --8<-- [start:{name}] -->") == 1 and readme.count(f"<!-- --8<-- [end:{name}] -->") == 1, name


def test_every_page_is_in_the_nav():
    config = (ROOT / "mkdocs.yml").read_text()
    nav = set(re.findall(r":\s*([\w/-]+\.md)\s*$", config, flags=re.M))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages == nav


# ----------------------------------------------------------------------------- configuration
def _generator():
    sys.path.insert(0, str(ROOT / "tools"))
    import gen_config_reference as gen
    return gen


def test_config_reference_is_current_and_agrees_with_the_schema():
    gen = _generator()
    page = DOCS / "configuration.md"
    text = page.read_text()
    assert gen.PAGE == page
    assert gen.splice(text, gen.render()) == text, "stale: run python tools/gen_config_reference.py"
    body = text.split(gen.START)[1].split(gen.END)[0]
    keys_part = body.split("Keys each shipped recipe sets differently")[0]  # the per-recipe table follows
    rows = dict(re.findall(r"^\| `([a-z_]+\.[a-z_0-9]+)` \| `(.*?)` \|", keys_part, flags=re.M))
    schema_text = gen.SCHEMA.read_text()
    defaults = gen._flatten(yaml.safe_load(schema_text))
    schema = [k for k, _, _ in gen.schema_entries(schema_text)]
    assert list(rows) == schema  # every key of the schema, in its order, and nothing else
    for key in schema:  # each default as the schema gives it
        assert yaml.safe_load(rows[key].replace("\\|", "|")) == defaults[key], (key, rows[key], defaults[key])
    assert "`configs/demo/yolox-nano-demo.yaml`" in body


def test_config_reference_check_fails_on_a_stale_page(tmp_path, capsys):
    gen = _generator()
    page = tmp_path / "configuration.md"
    page.write_text((DOCS / "configuration.md").read_text())
    assert gen.main(["--check", "--page", str(page)]) == 0
    page.write_text(page.read_text().replace("| `train.max_epoch` | `300` |", "| `train.max_epoch` | `299` |"))
    assert gen.main(["--check", "--page", str(page)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert gen.main(["--page", str(page)]) == 0 and page.read_text() == (DOCS / "configuration.md").read_text()


# ----------------------------------------------------------------------------- the site
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"mkdocs build --strict failed:\n{p.stderr[-4000:]}"
    return out


def _text(site, page):
    html = (site / f"{page or 'index'}.html").read_text()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_mkdocs_build_strict(site):
    pages = {p.relative_to(DOCS).with_suffix("").as_posix() for p in DOCS.rglob("*.md")} - {"index"}
    for page in pages:
        assert (site / f"{page}.html").is_file(), page   # use_directory_urls: false
    # the README's sections came in through the snippets
    assert "python train.py --config configs/demo/yolox-nano-demo.yaml" in _text(site, "getting-started")
    assert "yolox-darknet53.yaml" in _text(site, "") and "arXiv:2107.08430" in _text(site, "")
    assert "the official decode_in_inference" in _text(site, "deploy")  # deploy/README.md included
    # the configuration reference and the API reference from the docstrings
    assert "train.accumulate" in _text(site, "configuration")
    api = _text(site, "api")
    assert "load_weights" in api and "skip_mismatched" in api and "early_stopped" in api


ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj):")


def test_no_raw_role_or_escaped_pipe_in_any_page(site):
    """What a reader sees: no Sphinx role (``:class:`` etc.) left by a docstring, no ``\\|`` left
    by a pipe escaped inside inline code in a table."""
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        text = re.sub(r"<[^>]+>", "", page.read_text())
        assert not ROLE.search(text), f"{page.relative_to(site)}: raw role {ROLE.search(text).group()}"
        assert "\\|" not in text, f"{page.relative_to(site)}: a visible \\|"


def test_api_page_has_parameter_tables_and_a_trainer_signature(site):
    html = (site / "api.html").read_text()
    trainer = html.split('id="mindyolox.training.trainer.Trainer"')[1].split('id="mindyolox.training.trainer.Trainer.train"')[0]
    assert "compile_cache" in trainer and "Trainer(" in re.sub(r"<[^>]+>", "", trainer)  # the signature
    params = re.search(r"<table>.*?</table>", trainer, flags=re.S).group()
    for name in ("cfg", "resume", "weights", "compile_cache", "precompile"):  # one row per argument
        assert f"<code>{name}</code>" in params, name


def test_configuration_tables_fit_the_page(site):
    """The per-recipe keys are one section per recipe (a list), not one column per recipe (10
    columns scrolled sideways and hid the demo recipes); the key tables have 3 columns."""
    html = (site / "configuration.html").read_text()
    tables = re.findall(r"<table>.*?</table>", html, flags=re.S)
    assert len(tables) >= 6   # model, data, aug, train, runtime, test
    for table in tables:
        header = re.search(r"<tr>(.*?)</tr>", table, flags=re.S).group(1)
        assert header.count("<th") <= 3, header
    assert 'id="yolox-nano-demo"' in html and 'id="yolox-nano-cpu"' in html
    demo = html.split('id="yolox-nano-demo"')[1].split("<h4")[0]
    assert "<code>model.num_classes</code>: <code>6</code> (default <code>80</code>)" in demo


def test_user_pages_use_no_maintainer_paths(site):
    """``../shared``, ``/tmp/...`` and the machine's lock file belong to Contributing, the
    changelog and Benchmarks' "How to reproduce"; a user page says ``--weights yolox_nano``."""
    for page in sorted(site.glob("*.html")):
        name = page.stem
        if name in ("contributing", "changelog"):
            continue
        html = page.read_text()
        if name == "benchmarks":
            html = html.split('id="how-to-reproduce-each-table"')[0]
        text = re.sub(r"<[^>]+>", "", html)
        for path in ("../shared", "/tmp/", "heavy.lock"):
            assert path not in text, f"{name}: {path}"


def test_benchmark_chart_reads_the_side_by_side_table():
    """docs/img/benchmark_ratios.png is drawn from the table itself (tools/make_doc_images.py
    --only bench): the reader finds its cases, both sittings' ratios and the goals."""
    sys.path.insert(0, str(ROOT / "tools"))
    import doc_charts
    date, rows = doc_charts.read_ratios()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date) and len(rows) >= 3
    section = (DOCS / "benchmarks.md").read_text().split(doc_charts.HEADING)[1].split("\n## ")[0]
    for row in rows:
        line = next(ln for ln in section.splitlines() if ln.startswith(f"| {row['case']} |"))
        for k in ("before", "now"):
            ratio, high, lo, hi = row[k]
            assert f"{ratio:.2f}" in line and lo <= ratio <= high <= hi + 1e-9, (row["case"], k, row[k])
        assert row["goal"] is None or f"<= {row['goal']}" in line
    img = doc_charts.draw_ratios(date, rows)
    assert img.shape[1] == 900 and img.shape[0] > 60 * len(rows)
