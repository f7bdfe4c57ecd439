"""Where the time of a compiled train step goes: MindSpore's profiler over a few steps of the
bench's train step (``bench.bench_train``'s synthetic case), summed per part and per op type.
``--eval``: the same for the decoded eval forward of ``bench.compare``'s eval case (one part).

    python -m bench.profile_step --case nano:416:8
    python -m bench.profile_step --case s:640:2 --steps 3 --top 25
    python -m bench.profile_step --eval --case nano:416:1 --steps 20

Parts (by the op's scope): ``forward`` (the model, incl. SiLU), ``backward`` (gradients of
the model and the loss, incl. SiLU's), ``loss`` (SimOTA assignment and the loss terms),
``update`` (SGD, EMA, step counters). Op types are MindSpore kernels; per-op times are host
wall times of each kernel (the kernels of one step run one after another, each using the
CPU's threads), in ms per step. The profile costs a few percent of speed; use
``bench.compare`` for speed figures.
"""
import argparse
import collections
import csv
import glob
import os
import sys
import tempfile

from bench import harness


def part_of(full_name):
    """Scope of a kernel (``full_op_name`` of the profiler) -> forward / backward / loss / update."""
    if full_name.startswith("Gradients/") or "Grad" in full_name.split("/")[0]:
        return "backward"
    if "Expand/_" in full_name and "Grad" in full_name:
        return "backward"
    if "/loss-" in full_name:
        return "loss"
    if "/model-" in full_name or full_name.startswith("Expand/"):
        return "forward"
    return "update"


def summarize(csv_path, steps, top, eval_mode=False):
    """Per-part and per-(part, op type) ms per step from the profiler's cpu_op_detail_info."""
    parts, ops_ = collections.Counter(), collections.Counter()
    with open(csv_path) as f:
        for r in csv.DictReader(f):
            ms_per_step = float(r["op_total_time(ms)"]) / steps
            part = "eval forward" if eval_mode else part_of(r["full_op_name"])
            parts[part] += ms_per_step
            ops_[(part, r["op_type"])] += ms_per_step
    total = sum(parts.values())
    lines = [f"kernel time {total:.0f} ms per step", "| part | ms/step | share |", "|---|---|---|"]
    lines += [f"| {p} | {v:.0f} | {100 * v / total:.0f} % |" for p, v in parts.most_common()]
    lines += ["", "| part | op type | ms/step | share |", "|---|---|---|---|"]
    lines += [f"| {p} | {o} | {v:.0f} | {100 * v / total:.1f} % |" for (p, o), v in ops_.most_common(top)]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--case", default="nano:416:8", help="variant:size:batch (default nano:416:8)")
    p.add_argument("--steps", type=int, default=3, help="profiled steps (default 3)")
    p.add_argument("--top", type=int, default=20, help="op types listed (default 20)")
    p.add_argument("--out", help="profiler output folder (default: a temporary one)")
    p.add_argument("--eval", action="store_true", help="profile the eval forward instead of the train step")
    args = p.parse_args(argv)
    import mindspore as ms
    variant, size, batch = args.case.split(":")
    if args.eval:
        from bench.compare import ours_model_and_input
        model, x = ours_model_and_input(variant, int(size), int(batch))

        def run():
            model(x).asnumpy()
    else:
        from bench.bench_train import build_case
        step, images, labels = build_case(variant, int(size), int(batch), "CPU")

        def run():
            step(images, labels)[0].asnumpy()
    harness.timed(run, 0, warmup=2)  # compile, then let the memory pools settle
    out = args.out or tempfile.mkdtemp(prefix="mindyolox_prof_")
    prof = ms.Profiler(output_path=out)
    wall = harness.timed(run, args.steps, warmup=0, first=False)
    wall = sum(wall.times_s) / args.steps
    prof.analyse()
    found = glob.glob(os.path.join(out, "**", "cpu_op_detail_info_*.csv"), recursive=True)
    if not found:
        raise SystemExit(f"error: the profiler wrote no cpu_op_detail_info_*.csv under {out}")
    what = "eval forward" if args.eval else "step"
    print(f"yolox-{variant} {size} batch {batch}: {wall * 1e3:.0f} ms per profiled {what} (wall)")
    print(summarize(found[0], args.steps, args.top, args.eval))
    return 0


if __name__ == "__main__":
    sys.exit(harness.main(main))
