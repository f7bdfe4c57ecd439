"""README.md and the docs cannot drift from the code: every ```bash block of README.md and of
docs/**/*.md (README first, then the pages sorted by path) runs here, in order, in one scratch
working directory (see tests/test_quickstart.py: links to the scripts, HOME inside it,
the official nano weights standing in for the download, a small pre-made demo dataset).

- A block preceded by ``<!-- ci: skip (reason) -->`` does not run (GPU, Ascend, 8-device
  ``msrun``, full COCO/VOC, downloads); its ``python`` commands are still checked statically:
  the script exists, ``--config`` loads with the command's ``key=value`` overrides.
- The ``<!-- install -->`` and ``<!-- test -->`` blocks are run by ``.ci/run``, not here.
- ``python train.py`` commands get a short schedule appended (``TRAIN_SHORT``).
- The quickstart blocks (README.md's, included into docs/getting-started.md by the site) are
  not run twice: their results come from the session's quickstart run
  (tests/test_quickstart.py), the same commands.
- After a command, every output it names (``-o``, ``--output``, ``--json-out``,
  ``--save-dir``, ``--out``) must exist.
"""
import json
import shlex

import pytest

from tests.conftest import ROOT
from tests.test_quickstart import (TRAIN_SHORT, block_after, doc_blocks, quickstart, readme_blocks, run_command,
                                   shorten)

OUTPUT_FLAGS = ("-o", "--output", "--json-out", "--save-dir", "--out")
EXPORT_SUFFIX = ".mindir"


def _named_outputs(command):
    """Paths a command says it writes (export's ``--output`` gets the suffix of its ``--format``)."""
    words = shlex.split(command)
    out = []
    for flag, value in zip(words, words[1:]):
        if flag in OUTPUT_FLAGS:
            if words[1] == "deploy/export.py" and flag == "--output":
                fmt = words[words.index("--format") + 1].upper() if "--format" in words else "MINDIR"
                value += {"ONNX": ".onnx", "AIR": ".air"}.get(fmt, EXPORT_SUFFIX)
            out.append(value)
    return out


def _readme_outputs():
    """Relative paths the commands of README.md and docs/ write in the project folder: their
    output flags, the files ``wget`` downloads, and the training run folder."""
    out = ["runs/train"]
    for b in doc_blocks():
        for command in b.commands:
            words = shlex.split(command)
            if words and words[0] == "wget":
                out.append(words[-1].rsplit("/", 1)[-1])
            out += [p for p in _named_outputs(command) if not p.startswith(("/", "~"))]
    return out


def test_gitignore_covers_what_the_readme_commands_write():
    import subprocess
    outputs = _readme_outputs()
    assert {"datasets/shapes", "shapes.png", "dog.jpg", "yolox_nano.pth"} <= set(outputs)
    kept = [p for p in outputs if subprocess.run(["git", "check-ignore", "-q", "--no-index", p],
                                                 cwd=ROOT).returncode != 0]
    assert not kept, f"not in .gitignore: {kept}"


def _expand(path, workdir):
    return workdir / "home" / path[2:] if path.startswith("~/") else workdir / path


def test_ci_markers_for_dot_ci_run_are_intact():
    """.ci/run reads the first line of the blocks after <!-- install --> and <!-- test -->."""
    text = (ROOT / "README.md").read_text()
    blocks = readme_blocks(text)
    install, _ = block_after("<!-- install -->", blocks)
    test, _ = block_after("<!-- test -->", blocks)
    assert install.commands == ["pip install -r requirements.txt"]
    assert test.commands == ["python -m pytest"]
    assert text.count("<!-- install -->") == 1 and text.count("<!-- test -->") == 1


def test_every_skip_marker_gives_a_reason_and_names_real_commands():
    from mindyolox.config import load_config
    blocks = doc_blocks()
    skipped = [b for b in blocks if b.skip_reason]
    assert len(skipped) >= 5 and len(skipped) < len(blocks)
    assert {b.path for b in blocks} >= {"README.md", "docs/training.md", "docs/getting-started.md"}
    for b in blocks:
        assert not b.marker.startswith("<!-- ci:") or b.skip_reason, f"{b.where}: malformed {b.marker}"
    checked = 0
    for b in skipped:
        for command in b.commands:
            words = shlex.split(command)
            scripts = [w for w in words if w.endswith(".py")]
            if not scripts:
                continue
            assert (ROOT / scripts[0]).is_file(), f"{b.where}: {scripts[0]} does not exist"
            if "--config" in words:
                cfg = words[words.index("--config") + 1]
                overrides = [w for w in words[words.index(scripts[0]) + 1:] if "=" in w and not w.startswith("-")]
                load_config(str(ROOT / cfg), overrides)  # raises ConfigError on drift
                checked += 1
    assert checked >= 4


# commands a block that CI runs must not contain: an install changes the test venv for every
# later test, a server never exits (the run waits COMMAND_TIMEOUT, then leaves it running)
NOT_RUN_IN_CI = (("pip install", "installs packages"), ("mlflow ui", "starts a server"),
                 ("mlflow server", "starts a server"), ("tensorboard --logdir", "starts a server"),
                 ("mkdocs serve", "starts a server"), ("wandb login", "asks for a key"))


def test_no_block_ci_runs_installs_or_starts_a_server():
    bad = [f"{b.where}: `{c}` {why}: mark the block <!-- ci: skip (reason) -->"
           for b in doc_blocks() if not b.skip_reason and not b.marker.startswith("<!-- install")
           for c in b.commands for word, why in NOT_RUN_IN_CI if word in c]
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_every_cpu_block_of_the_readme_runs(tmp_path_factory):
    work, qs_records = quickstart(tmp_path_factory)
    blocks = doc_blocks()
    qs_train, qs_next = block_after("<!-- quickstart-train -->", [b for b in blocks if b.path == "README.md"])
    shared = {r["command"]: r for r in qs_records}
    failures, ran, log = [], 0, []
    for b in blocks:
        if b.skip_reason:
            continue
        for command in b.commands:
            short = shorten(command)
            if b is qs_train or b is qs_next:
                rec = shared.get(short)
                assert rec is not None, f"quickstart command not run by the session's quickstart: {command}"
                rc, out = rec["returncode"], rec["output"]
            else:
                rc, out, _ = run_command(short, work, log)
            ran += 1
            if rc != 0:
                failures.append(f"{b.where}: `{short}` exited {rc}:\n{out[-2500:]}")
                continue
            for path in _named_outputs(command):
                if not _expand(path, work).exists():
                    failures.append(f"{b.where}: `{command}` did not write {path}")
    (work.parent / "readme_records.json").write_text(json.dumps(log))  # for a look after a failure
    assert not failures, "\n\n".join(failures)
    assert ran >= 10
    assert all(" ".join(TRAIN_SHORT) in r["command"] for r in log if "train.py" in r["command"])
