"""The whole training job side by side with the official YOLOX 0.3.0 trainer, over several
seeds: AP50:95 / AP50 at each evaluation, wall time, mean step time, seed spread per side.

    python -m bench.check_job --anchor-python /tmp/anchor-venv/bin/python --seeds 0 1 2 3 --out /tmp/job.json
    python -m bench.check_job --seeds 0 --sides ours       # our side alone, nothing compared

Our side is ``train.py --config CONFIG train.seed=S [--set ...]`` (default the quickstart
recipe ``configs/demo/yolox-nano-demo.yaml``); the official side is the launcher in
``../shared/anchors/official-yolox/demo_job`` (the official ``Trainer`` on CPU with the same
recipe as an official ``Exp``), given the same seed, the same values and the same data folder:
every scalar ``train.X`` / ``aug.X`` / ``data.max_labels`` of the resolved recipe (``--set``
included) that differs from the Exp's own ``self.X = ...`` is passed as the Exp's ``X V``
(``recipe_opts``), so a recipe edited after the Exp was written still runs the same job. Both
sides evaluate the EMA weights after the same epochs: every ``train.eval_interval`` epochs and
each epoch from the no-aug switch on (the official trainer's ``eval_interval = 1``), the last
included. The anchor venv also needs ``tqdm`` (the official evaluator imports it).

``--weights FILE.pth`` fine-tunes both sides from the same official checkpoint (for example
``../shared/weights/yolox_nano.pth``): ours is given ``--weights FILE``, the official side the
Exp ``bench/official_finetune_exp.py`` (copied into ``--work`` with the file's path set) that
extends the launcher's Exp and loads the file in ``get_model`` with the official
``yolox.utils.load_ckpt`` (what official ``tools/train.py -c FILE`` does: tensors of another
shape -- the 80-class layers -- keep their initial values). That Exp file is run by the anchor
venv only; nothing here imports the official code.

Every job is a command line run and timed by :func:`bench.harness.run_process` (wall time,
exit code, log file).

Jobs run one after the other, official then ours for each seed, so the wall times are
comparable and their ratio is measured in one sitting. Nothing else should run meanwhile:
MindSpore's CPU thread pool slows down sharply on a shared CPU (our nano step at 160 px
measured 2.3-2.6 s next to two official jobs against 0.31 s alone). ``--reuse`` takes a
job whose results are already in ``--work`` (official: ``official/seedN/fid_summary.json``,
for example from earlier launcher runs with the same settings; ours: ``ours/seedN``). A job
that fails is reported with the tail of its log and the table goes on.
"""
import argparse
import ast
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import harness

ROOT, SHARED = harness.ROOT, harness.SHARED
ANCHOR = SHARED / "anchors" / "official-yolox"
OFFICIAL_TRAIN = ANCHOR / "demo_job" / "official_train.py"
OFFICIAL_EXP = ANCHOR / "demo_job" / "yolox_nano_demo_exp.py"
DEFAULT_CONFIG = "configs/demo/yolox-nano-demo.yaml"
# recipe sections whose keys carry the official Exp attribute names
_OFFICIAL_SECTIONS = ("train", "aug")
_OFFICIAL_DATA_KEYS = ("max_labels",)


def official_opts(overrides):
    """``section.key=value`` overrides -> the official launcher's ``key value`` pairs; one
    line of error for a key with no official counterpart."""
    opts = []
    for ov in overrides:
        key, sep, value = ov.partition("=")
        section, _, name = key.partition(".")
        if not sep or not name or "." in name:
            raise SystemExit(f"error: --set takes section.key=value, got {ov!r}")
        if section not in _OFFICIAL_SECTIONS and not (section == "data" and name in _OFFICIAL_DATA_KEYS):
            raise SystemExit(f"error: --set {key}: no counterpart in the official Exp (use train.*, aug.*, "
                             f"data.max_labels)")
        opts += [name, value]
    return opts


def exp_values(path=OFFICIAL_EXP):
    """``{attribute: value}`` of the Exp's ``self.X = <Python literal>`` lines (the rest, such
    as ``os.environ.get(...)``, is left out)."""
    out = {}
    for name, expr in re.findall(r"^\s+self\.(\w+) = ([^#\n]+)", Path(path).read_text(), re.M):
        try:
            out[name] = ast.literal_eval(expr.strip())
        except (ValueError, SyntaxError):
            continue
    return out


def recipe_opts(cfg, exp):
    """The official launcher's ``key value`` pairs for every scalar ``train.*`` / ``aug.*`` /
    ``data.max_labels`` of recipe ``cfg`` whose name is an Exp attribute (``exp``, from
    :func:`exp_values`) with another value. A differing bool is refused: the Exp's ``merge``
    would read the string ``False`` as true."""
    items = [(k, v) for s in _OFFICIAL_SECTIONS for k, v in cfg[s].items()]
    items += [(k, cfg.data[k]) for k in _OFFICIAL_DATA_KEYS]
    opts = []
    for name, value in items:
        if name not in exp or isinstance(value, (list, tuple, dict)) or value == exp[name]:
            continue
        if isinstance(value, bool) or isinstance(exp[name], bool):
            raise SystemExit(f"error: {name}: {value!r} here, {exp[name]!r} in the official Exp; a bool cannot "
                             "be passed to the official launcher")
        opts += [name, str(value)]
    return opts


def eval_epochs(train_cfg):
    """The epochs (1-based) after which our trainer evaluates (see the module doc)."""
    from mindyolox.training.trainer import eval_due
    return [e for e in range(1, int(train_cfg.max_epoch) + 1) if eval_due(e, train_cfg)]


def _run(cmd, log, env):
    """``(exit code, wall s)`` of ``cmd`` run in the repository root, its output in ``log``."""
    run = harness.run_process(cmd, env=env, log=log)
    return run.rc, run.wall_s


def _failed(side, seed, rc, log):
    tail = Path(log).read_text(errors="replace").splitlines()[-5:]
    return {"side": side, "seed": seed, "error": f"exit {rc}, log {log}: " + " | ".join(tail)}


FINETUNE_EXP = Path(__file__).with_name("official_finetune_exp.py")


def finetune_exp(weights, work):
    """Copy the official side's fine-tuning Exp (:mod:`bench.official_finetune_exp`) into
    ``work`` with its ``WEIGHTS`` (``weights``, resolved) and ``EXP_DIR`` (the launcher's Exp
    folder) set; returns the copy's path."""
    text = FINETUNE_EXP.read_text()
    values = {"WEIGHTS": str(Path(weights).resolve()), "EXP_DIR": str(OFFICIAL_EXP.parent)}
    for name, value in values.items():
        text, n = re.subn(rf"^{name} = None\b.*$", lambda m: f"{name} = {value!r}", text, count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f"error: {FINETUNE_EXP}: no line '{name} = None' to set")
    if f"from {OFFICIAL_EXP.stem} import Exp" not in text:
        raise SystemExit(f"error: {FINETUNE_EXP} does not extend {OFFICIAL_EXP.stem}.Exp")
    path = Path(work) / "official_finetune_exp.py"
    path.write_text(text)
    return path


def run_official(args, seed, work, data_dir, epochs):
    name = f"seed{seed}"
    env = dict(os.environ, PYTHONPATH=f"{ANCHOR / 'stubs'}:{ANCHOR}", DEMO_DATA=str(data_dir),
               OFFICIAL_RUNS=str(work / "official"))
    cmd = [args.anchor_python, str(OFFICIAL_TRAIN), "-expn", name, "--seed", str(seed),
           "--eval-epochs", ",".join(map(str, epochs))]
    if args.official_exp:
        cmd += ["-f", str(args.official_exp)]
    cmd += args.official_opts
    log = work / f"official_{name}.log"
    summary = work / "official" / name / "fid_summary.json"
    reused = args.reuse and summary.exists()
    if reused:
        rc, wall = 0, json.loads(summary.read_text())["process_s"]  # the launcher's own clock
    elif args.table_only:
        return None
    else:
        summary.unlink(missing_ok=True)
        rc, wall = _run(cmd, log, env)
    if rc != 0 or not summary.exists():
        return _failed("official", seed, rc, log)
    s = json.loads(summary.read_text())
    steps_s = s["train_steps_total_s"]
    eval_s = sum(e.get("eval_s_incl_ckpt", e.get("eval_s", 0.0)) for e in s["evals"])
    parts = {"start": wall - s["train_loop_s"], "compile": 0.0, "steps": steps_s, "eval": eval_s,
             "checkpoints+other": s["train_loop_s"] - steps_s - eval_s}
    return {"side": "official", "seed": seed, "reused": reused, "wall_s": wall,
            "mean_step_s": s["mean_step_s"], "steps": s["steps"], "parts": parts,
            "evals": {int(e["epoch"]): (100 * e["AP50_95"], 100 * e["AP50"]) for e in s["evals"]}}


def run_ours(args, seed, work):
    name = f"seed{seed}"
    run_dir = work / "ours" / name
    wall_file = run_dir / "wall_s.txt"
    reused = args.reuse and wall_file.exists()
    if reused:
        rc, wall = 0, float(wall_file.read_text())
    elif args.table_only:
        return None
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        cmd = [sys.executable, "train.py", "--config", args.config, "--run-dir", str(run_dir), "--no-progress",
               f"train.seed={seed}"] + (["--weights", args.weights] if args.weights else []) + list(args.set)
        rc, wall = _run(cmd, work / f"ours_{name}.log", dict(os.environ))
        if rc == 0:
            wall_file.write_text(f"{wall:.3f}")
    metrics = run_dir / "metrics.jsonl"
    log = work / f"ours_{name}.log"
    if rc != 0 or not metrics.exists():
        return _failed("ours", seed, rc, log)
    recs = [json.loads(line) for line in metrics.read_text().splitlines()]
    train = [r for r in recs if r["type"] == "train"]
    steps = sum(r["steps"] for r in train)
    step_s = sum((r["step_ms"] + r["data_ms"]) * r["steps"] for r in train) / max(steps, 1) / 1e3
    evals = [r for r in recs if r["type"] == "eval"]
    t = next((r for r in recs if r["type"] == "time"), None)
    parts = None
    if t is not None:  # the trainer's own account (Trainer._log_timing)
        parts = {"start": wall - t["total_s"] + t["setup_s"], "compile": t["compile_s"],
                 "steps": t["step_s"] + t["data_s"], "eval": t["eval_s"],
                 "checkpoints+other": t["ckpt_s"] + t["other_s"]}
    return {"side": "ours", "seed": seed, "reused": reused, "wall_s": wall, "mean_step_s": step_s,
            "steps": steps, "parts": parts,
            "evals": {int(r["epoch"]): (100 * r["AP50_95"], 100 * r["AP50"]) for r in evals}}


def summarize(results, epochs):
    """Per side: mean and spread (max - min) of AP50:95 / AP50 at each evaluated epoch, mean
    wall and step time; returns ``{side: {...}}``."""
    out = {}
    for side in ("official", "ours"):
        rows = [r for r in results if r["side"] == side and "error" not in r]
        if not rows:
            continue
        s = {"seeds": [r["seed"] for r in rows], "wall_s": statistics.mean(r["wall_s"] for r in rows),
             "mean_step_s": statistics.mean(r["mean_step_s"] for r in rows), "ap": {}}
        for e in epochs:
            vals = [r["evals"][e] for r in rows if e in r["evals"]]
            if vals:
                a, a50 = [v[0] for v in vals], [v[1] for v in vals]
                s["ap"][e] = {"mean": (statistics.mean(a), statistics.mean(a50)),
                              "spread": (max(a) - min(a), max(a50) - min(a50))}
        out[side] = s
    return out


def table(results, summary, epochs):
    def ap(v):
        return f"{v[0]:5.2f} / {v[1]:5.2f}" if v else "   -   /   -  "
    head = "| side | seed | " + " | ".join(f"epoch {e} AP50:95 / AP50" for e in epochs) + " | wall | mean step |"
    lines = [head, "|" + "---|" * (len(epochs) + 4)]
    for r in sorted(results, key=lambda r: (r["side"], r["seed"])):
        if "error" in r:
            lines.append(f"| {r['side']} | {r['seed']} | FAILED: {r['error']} |")
            continue
        cells = " | ".join(ap(r["evals"].get(e)) for e in epochs)
        lines.append(f"| {r['side']} | {r['seed']} | {cells} | {r['wall_s'] / 60:.1f} min | "
                     f"{1e3 * r['mean_step_s']:.0f} ms |")
    for side, s in summary.items():
        cells = " | ".join(ap(s["ap"][e]["mean"]) if e in s["ap"] else ap(None) for e in epochs)
        lines.append(f"| {side} mean | {len(s['seeds'])} seeds | {cells} | {s['wall_s'] / 60:.1f} min | "
                     f"{1e3 * s['mean_step_s']:.0f} ms |")
        cells = " | ".join(ap(s["ap"][e]["spread"]) if e in s["ap"] else ap(None) for e in epochs)
        lines.append(f"| {side} spread (max-min) | | {cells} | | |")
    if "official" in summary and "ours" in summary:
        o, m = summary["official"], summary["ours"]
        diffs = []
        for e in epochs:
            if e in o["ap"] and e in m["ap"]:
                d = [m["ap"][e]["mean"][i] - o["ap"][e]["mean"][i] for i in (0, 1)]
                diffs.append(f"epoch {e}: {d[0]:+.2f} / {d[1]:+.2f}")
        lines.append("")
        lines.append("ours - official, mean AP50:95 / AP50: " + "; ".join(diffs))
        lines.append(f"wall-time ratio ours / official: {m['wall_s'] / o['wall_s']:.2f} "
                     f"(mean step {m['mean_step_s'] / o['mean_step_s']:.2f}); a comparison only when every "
                     f"job ran alone, one after the other, in one sitting")
    lines += ["", "where the wall time goes (mean over seeds, s): start = process start to the first step "
              "(imports, model, data, graph build); compile = first step of each input size"]
    names = ["start", "compile", "steps", "eval", "checkpoints+other"]
    lines += ["| side | " + " | ".join(names) + " | wall |", "|---" * (len(names) + 2) + "|"]
    for side in ("official", "ours"):
        rows = [r for r in results if r["side"] == side and r.get("parts")]
        if rows:
            cells = " | ".join(f"{statistics.mean(r['parts'][n] for r in rows):.1f}" for n in names)
            lines.append(f"| {side} | {cells} | {statistics.mean(r['wall_s'] for r in rows):.1f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--anchor-python", help="python of the anchor venv (official side); none: ours only")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides for both sides (train.*, aug.*, data.max_labels)")
    p.add_argument("--weights", help="official .pth both sides fine-tune from (module doc); default: from scratch")
    p.add_argument("--sides", nargs="+", choices=["official", "ours"], default=["official", "ours"])
    p.add_argument("--work", default="/tmp/mindyolox_compare_job", help="run folders and logs")
    p.add_argument("--reuse", action="store_true",
                   help="take a job whose results are already in --work instead of running it again")
    p.add_argument("--table-only", action="store_true",
                   help="run nothing: the table of the jobs whose results are in --work (implies --reuse)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    args.reuse = args.reuse or args.table_only
    from mindyolox import load_config
    from mindyolox.data.demo import resolve_data_dir

    cfg = load_config(args.config, list(args.set))
    epochs = eval_epochs(cfg.train)
    sides = [s for s in args.sides if s == "ours" or args.anchor_python]
    if "official" in args.sides and not args.anchor_python:
        print("no --anchor-python: our side only, nothing compared")
    if args.weights:
        if not Path(args.weights).is_file():
            raise SystemExit(f"error: --weights {args.weights}: no such file")
        args.weights = str(Path(args.weights).resolve())  # train.py runs in the clone's root
    if "official" in sides:
        official_opts(args.set)  # refuse untranslatable keys before anything runs
        args.official_opts = recipe_opts(cfg, exp_values())
        if not OFFICIAL_TRAIN.exists():
            raise SystemExit(f"error: {OFFICIAL_TRAIN} not found (set MINDYOLOX_SHARED)")
        if subprocess.call([args.anchor_python, "-c", "import torch, tqdm, pycocotools"]) != 0:
            raise SystemExit(f"error: {args.anchor_python} lacks torch/tqdm/pycocotools: run "
                             f"{ANCHOR / 'setup_venv.sh'} and `pip install tqdm` into that venv")
    data_dir = resolve_data_dir(cfg.data.data_dir)  # generates the demo dataset when missing
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    args.official_exp = finetune_exp(args.weights, work) if args.weights and "official" in sides else None
    jobs = [(side, seed) for seed in args.seeds for side in sides]
    print(f"{len(jobs)} jobs ({', '.join(sides)}; seeds {args.seeds}), evaluation after epochs {epochs}, "
          f"overrides {args.set or 'none'}" + (f", fine-tuning from {args.weights}" if args.weights else "")
          + (f", official Exp given {' '.join(args.official_opts) or 'nothing'}" if "official" in sides else "")
          + f"; logs in {work}", flush=True)

    def one(job):
        side, seed = job
        t0 = time.strftime("%H:%M:%S")
        r = (run_official(args, seed, work, data_dir, epochs) if side == "official"
             else run_ours(args, seed, work))
        if r is None:
            return None
        last = r.get("evals", {}).get(epochs[-1]) if epochs else None
        print(f"  {side} seed {seed} ({'earlier results' if r.get('reused') else 'started ' + t0}): "
              + (r["error"] if "error" in r else
                 f"{r['wall_s'] / 60:.1f} min, final AP50:95 {last[0]:.2f} AP50 {last[1]:.2f}" if last else "no eval"),
              flush=True)
        return r

    results = [r for r in map(one, jobs) if r is not None]
    summary = summarize(results, epochs)
    print(table(results, summary, epochs))
    if args.out:
        Path(args.out).write_text(json.dumps({"results": results, "summary": summary, "epochs": epochs,
                                              "overrides": args.set,
                                              "weights": args.weights}, indent=1))


if __name__ == "__main__":
    sys.exit(harness.main(main))
