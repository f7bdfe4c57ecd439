"""Side by side with the official YOLOX: train-step and eval-forward speed, peak memory and
first-call time of this project and of the official YOLOX 0.3.0 PyTorch code, in interleaved
rounds (official, ours, official, ours, ...) in one invocation.

    python -m bench.compare --anchor-python /tmp/anchor-venv/bin/python            # 3 rounds, 5 cases
    python -m bench.compare --anchor-python /tmp/anchor-venv/bin/python --rounds 5 \\
        --cases train:nano:416:8 eval:nano:416:1
    python -m bench.compare                                                        # ours only
    git worktree add /tmp/before HEAD~3 && python -m bench.compare --anchor-python /tmp/anchor-venv/bin/python \\
        --before /tmp/before                                   # + an earlier commit, same rounds

The anchor is ``../shared/anchors/official-yolox`` (``setup_venv.sh`` makes its venv; its
``bench_official.py`` times the official ``train_one_iter`` with ``ModelEMA.update``, and
``model(x)`` under ``torch.no_grad()``). A case is ``kind:variant:size:batch`` with kind
``train`` (forward, SimOTA loss, backward, SGD, EMA; random inputs 0..255 and ``--boxes``
random boxes per image in ``max_labels`` = 120 slots, both sides) or ``eval`` (decoded
forward, no NMS). Every case runs in its own process on both sides, so peak RSS is that
case's own (ours: VmHWM, :func:`bench.harness.peak_rss_mb`; the official bench reports its
``ru_maxrss``, which equals it for a process started by this small parent).

Each side reports per round: the median of ``--steps`` timed calls (after the first call
and one untimed warm-up call), the first call (graph compile for us, ~1 s of lazy init for
PyTorch) and peak RSS. The table gives medians over rounds and the ratio ours / official
per round: its median and its spread (min..max). Absolute times drift 10-15 % within an
hour on a shared machine, so only ratios measured in one sitting are comparisons; without
``--anchor-python`` the table has our figures only and says that no ratio was measured.
"""
import argparse
import json
import os
import statistics
import sys
import time

from bench import harness

ANCHOR = harness.SHARED / "anchors" / "official-yolox" / "bench_official.py"
DEFAULT_CASES = ["train:s:320:4", "train:s:640:2", "train:nano:416:8", "eval:s:640:1", "eval:nano:416:1"]
# the goals of issue 28 (CPU speed): train step <= 1.5x, eval forward <= 1.3x the official time
TARGETS = {"train:s": 1.5, "train:nano": 1.5, "eval:s": 1.3, "eval:nano": 1.3}


def parse_case(case):
    """``kind:variant:size:batch`` -> (kind, variant, size, batch); a clear error otherwise."""
    try:
        kind, variant, size, batch = case.split(":")
        if kind not in ("train", "eval"):
            raise ValueError
        return kind, variant, int(size), int(batch)
    except ValueError:
        raise SystemExit(f"error: a case is kind:variant:size:batch with kind train|eval "
                         f"(e.g. train:s:320:4), got {case!r}") from None


def ours_model_and_input(variant, size, batch):
    """The eval case's model (eval mode, the CPU's resolved options, BatchNorm folded as
    ``test.py`` / ``predict.py`` run it) and its input [B, 3, size, size]."""
    import mindspore as ms
    import numpy as np
    from mindyolox import build_model, load_config
    from mindyolox.runtime.context import setup_mindspore
    setup_mindspore("CPU")
    ms.set_seed(0)
    from mindyolox.models.fold import fold_batchnorms
    model = build_model(load_config(harness.ROOT / "configs" / f"yolox-{variant}.yaml"))
    fold_batchnorms(model)   # the eval model of test.py / predict.py (runtime.context.build_and_load)
    model.set_train(False)
    x = ms.Tensor(np.random.default_rng(0).uniform(0, 255, (batch, 3, size, size)).round().astype(np.float32))
    return model, x


def eval_forward(variant, size, batch, steps):
    """Case: the decoded eval forward of yolox-``variant`` on [batch, 3, size, size]: the first
    call (compile), one untimed call, ``steps`` timed calls. A :func:`bench.harness.record`."""
    model, x = ours_model_and_input(variant, size, batch)
    t = harness.timed(lambda: model(x).asnumpy(), steps, warmup=1)
    return harness.record(f"eval:{variant}:{size}:{batch}", t)


def run_ours(case, steps, boxes, root=harness.ROOT):
    """Our side of ``case`` in its own process: ``{median_ms, first_s, peak_gb}`` (the train
    case is :func:`bench.bench_train.train_step` with one untimed call after the compile);
    ``root``: the checkout to run (``--before``: an earlier commit's)."""
    kind, variant, size, batch = parse_case(case)
    try:
        if kind == "train":
            r = harness.run_case("bench_train", "train_step", dict(variant=variant, size=size, batch=batch,
                                                                   steps=steps, warmup=1, boxes=boxes), root=root)
        else:
            r = harness.run_case("compare", "eval_forward", dict(variant=variant, size=size, batch=batch,
                                                                 steps=steps), root=root)
    except harness.CaseError as e:
        raise SystemExit(f"error: our case {case} failed: {e.detail()}") from None
    return {"median_ms": 1e3 * r["median_s"], "first_s": r["first_s"], "peak_gb": r["peak_rss_mb"] * 2**20 / 1e9,
            "record": r}


def run_official(python, case, steps, boxes):
    """The official side of ``case``: ``bench_official.py --one`` of the anchor (its own timing:
    the same first call, 1-2 untimed calls and ``steps`` timed calls), run by
    :func:`bench.harness.run_process`."""
    kind = case.split(":")[0]
    args = [python, str(ANCHOR), "--one", case, f"--boxes={boxes}", "--eval-warmup=2", f"--eval-runs={steps}",
            "--train-warmup=1", f"--train-steps={steps}"] + (["--ema"] if kind == "train" else [])
    run = harness.run_process(args)
    lines = [x for x in run.stdout.splitlines() if x.startswith(harness.RESULT)]
    if run.rc or not lines:
        raise SystemExit(f"error: official case {case} failed ({' '.join(args)}):\n{run.stderr[-3000:]}")
    r = json.loads(lines[-1][len(harness.RESULT):])
    timed = r["ms_with_ema"] if kind == "train" else r["ms"]  # our step always updates the EMA
    first = r["first_step_ms"] if kind == "train" else r["first_call_ms"]
    return {"median_ms": timed["median"], "first_s": first / 1e3, "peak_gb": r["peak_rss_gb"],
            "threads": r["torch_num_threads"], "record": r}


def _span(values, fmt):
    return fmt.format(min(values)) + ".." + fmt.format(max(values)) if len(values) > 1 else "-"


def table(cases, ours, official, before=None):
    """Markdown table: one row per case, medians over rounds; ratio per round ours/official;
    ``before`` (``--before``): the earlier checkout's ms, ratio, RSS and first call first."""
    if before is not None:
        rows = ["| case | before ms | ratio before | ours ms | ratio now | official ms "
                "| RSS before / now / official GB | first call before / now / official s |",
                "|---|---|---|---|---|---|---|---|"]
        for case in cases:
            o, b, f = ours[case], before[case], official[case]
            med = {k: statistics.median([r["median_ms"] for r in v]) for k, v in (("o", o), ("b", b), ("f", f))}
            ratio = {k: statistics.median([a["median_ms"] / c["median_ms"] for a, c in zip(v, f)])
                     for k, v in (("o", o), ("b", b))}
            span = {k: _span([a["median_ms"] / c["median_ms"] for a, c in zip(v, f)], "{:.2f}") for k, v in (("o", o), ("b", b))}
            rss = " / ".join(f"{max(r['peak_gb'] for r in v):.2f}" for v in (b, o, f))
            first = " / ".join(f"{statistics.median([r['first_s'] for r in v]):.1f}" for v in (b, o, f))
            rows.append(f"| {case} | {med['b']:.0f} | {ratio['b']:.2f} ({span['b']}) | {med['o']:.0f} | "
                        f"{ratio['o']:.2f} ({span['o']}) | {med['f']:.0f} | {rss} | {first} |")
        return "\n".join(rows)
    rows = ["| case | ours ms | official ms | ratio | ratio spread | peak RSS ours / official GB "
            "| first call ours / official s |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        o = ours[case]
        med = statistics.median([r["median_ms"] for r in o])
        peak = max(r["peak_gb"] for r in o)
        first = statistics.median([r["first_s"] for r in o])
        if official:
            f = official[case]
            ratios = [a["median_ms"] / b["median_ms"] for a, b in zip(o, f)]
            kind, variant = case.split(":")[:2]
            target = TARGETS.get(f"{kind}:{variant}")
            mark = "" if target is None else (" (target <= %.2f: %s)" % (target, "met" if statistics.median(ratios)
                                                                           <= target else "not met"))
            rows.append(f"| {case} | {med:.0f} | {statistics.median([r['median_ms'] for r in f]):.0f} | "
                        f"{statistics.median(ratios):.2f}{mark} | {_span(ratios, '{:.2f}')} | "
                        f"{peak:.2f} / {max(r['peak_gb'] for r in f):.2f} | "
                        f"{first:.1f} / {statistics.median([r['first_s'] for r in f]):.1f} |")
        else:
            rows.append(f"| {case} | {med:.0f} | not measured | - | - | {peak:.2f} / - | {first:.1f} / - |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--anchor-python", help="python of the official code's venv (setup_venv.sh); without it "
                                           "only our figures are measured")
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="kind:variant:size:batch")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=5, help="timed calls per case and round (default 5)")
    p.add_argument("--boxes", type=int, default=8, help="random boxes per image in train cases (default 8)")
    p.add_argument("--out", help="also write every round's records as JSON here")
    p.add_argument("--before", help="a checkout of an earlier commit (git worktree add DIR REV): its cases run "
                                    "in the same rounds, after ours, for a before/after table of one sitting "
                                    "(needs --anchor-python)")
    args = p.parse_args(argv)
    if args.before and not (args.anchor_python and os.path.isdir(os.path.join(args.before, "bench"))):
        raise SystemExit(f"error: --before needs --anchor-python and a checkout with bench/ (got {args.before!r})")
    for case in args.cases:
        parse_case(case)
    if args.anchor_python and not ANCHOR.is_file():
        raise SystemExit(f"error: the official anchor {ANCHOR} is missing (set MINDYOLOX_SHARED)")
    ours = {c: [] for c in args.cases}
    official = {c: [] for c in args.cases} if args.anchor_python else None
    before = {c: [] for c in args.cases} if args.before else None
    load = [os.getloadavg()[0]]
    for rnd in range(args.rounds):
        for case in args.cases:
            if official is not None:
                official[case].append(run_official(args.anchor_python, case, args.steps, args.boxes))
                print(f"round {rnd + 1}/{args.rounds} {case} official {official[case][-1]['median_ms']:.0f} ms",
                      file=sys.stderr, flush=True)
            ours[case].append(run_ours(case, args.steps, args.boxes))
            print(f"round {rnd + 1}/{args.rounds} {case} ours {ours[case][-1]['median_ms']:.0f} ms",
                  file=sys.stderr, flush=True)
            if before is not None:
                before[case].append(run_ours(case, args.steps, args.boxes, root=os.path.abspath(args.before)))
                print(f"round {rnd + 1}/{args.rounds} {case} before {before[case][-1]['median_ms']:.0f} ms",
                      file=sys.stderr, flush=True)
            load.append(os.getloadavg()[0])
    print(f"{time.strftime('%Y-%m-%d %H:%M')} on {harness.cpu_line()}, {os.cpu_count()} cores, {args.rounds} interleaved rounds "
          f"x {args.steps} timed calls, load average {min(load):.1f}..{max(load):.1f}")
    if official is not None:
        threads = sorted({r["threads"] for rs in official.values() for r in rs})
        print(f"official side: PyTorch on {'/'.join(map(str, threads))} threads (torch.get_num_threads())")
    print(table(args.cases, ours, official, before))
    if official is None:
        print("no ratio measured: pass --anchor-python (../shared/anchors/official-yolox/setup_venv.sh makes it)")
    if args.out:
        harness.write_json(args.out, {"ours": ours, "official": official, "before": before, "load": load})
    return 0


if __name__ == "__main__":
    sys.exit(harness.main(main))
