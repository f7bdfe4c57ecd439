"""Accelerator check of the training path: nano on the demo data with ``--data-sink``,
multiscale and mixed precision O2 on a GPU / Ascend device, against a CPU float32 run of the
same steps; then resume-with-sink.

    python bench/check_device.py --device GPU --steps 300
    python bench/check_device.py --device CPU --steps 40      # the CPU half only (no sink)

Prints, per run: status, images/s (after compiling), the compile time of each input size,
device reads per step, and the loss per log window; then the relative gap between the device
O2 curve and the CPU float32 curve (mean over windows; float16 and a different kernel order
make them close, not equal) and whether the resumed run continued the step sequence.
Each run is a subprocess (MindSpore's device target is per process) with a time limit
(``--timeout`` seconds per run; a GetNext that waits for data forever would otherwise hang
the check): at the limit its whole process group is killed and the run counts as failed.
``--json FILE`` writes every run's figures and the verdict. Exit code 1 when a run fails or
times out, the curves differ by more than ``--tolerance``, or the resume does not continue.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def run_one(args):
    """One training run in this process; prints ``RESULT {json}``."""
    import mindspore as ms
    ms.set_device(args.device)
    ms.set_context(mode=ms.GRAPH_MODE)
    from mindyolox import load_config
    from mindyolox.engine.trainer import Trainer
    from mindyolox.options import resolve_options
    cfg = load_config(os.path.join(ROOT, "configs", "demo", "yolox-nano-demo.yaml"), [
        f"data.data_dir=demo:{args.data}", "data.random_size=[4,6]", f"train.amp_level={args.amp}",
        "train.print_interval=10", "train.max_epoch=10", "train.warmup_epochs=1", "train.no_aug_epochs=1"])
    tr = Trainer(cfg, resolve_options(cfg), run_dir=args.run_dir, resume=args.resume, exist_ok=True,
                 data_sink=args.sink, max_iters=args.steps, num_workers=2, progress=False, evaluate=False)
    status = tr.train()
    recs = [json.loads(x) for x in open(os.path.join(args.run_dir, "metrics.jsonl"))]
    starts = [i for i, r in enumerate(recs) if r.get("event") == "start"]
    train = [r for r in recs[starts[-1]:] if r["type"] == "train"]  # this process's run only
    step_s = [r["step_ms"] / 1e3 for r in train if r["step_ms"] > 0]
    print("RESULT " + json.dumps({
        "status": status, "compile_s": {f"{h}x{w}": round(t, 1) for (h, w), t in tr.sizes_seen.items()},
        "images_per_s": tr.per_device_batch / (sum(step_s) / len(step_s)) if step_s else None,
        "reads_per_step": tr.host_reads / max(tr.iters_done, 1), "iters": tr.iters_done,
        "windows": [(r["step"], r["total"]) for r in train]}))


def launch(device, amp, sink, steps, data, run_dir, resume=False, timeout=900.0):
    """One run in a subprocess of its own session; None when it fails or exceeds ``timeout`` s."""
    cmd = [sys.executable, __file__, "--one", "--device", device, "--amp", amp, "--steps", str(steps),
           "--data", data, "--run-dir", run_dir] + (["--sink"] if sink else []) + (["--resume"] if resume else [])
    print("+ " + " ".join(cmd[1:]), file=sys.stderr)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the run and its data workers
        p.communicate()
        print(f"FAILED: no result within {timeout:.0f} s (--timeout); killed")
        return None
    lines = [x for x in out.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not lines:
        print(f"FAILED ({p.returncode}):\n{out[-3000:]}\n{err[-3000:]}")
        return None
    return json.loads(lines[-1][7:])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="GPU", choices=("GPU", "Ascend", "CPU"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--tolerance", type=float, default=0.15, help="allowed mean relative loss gap")
    p.add_argument("--workdir", default=None, help="where the runs and the demo data go (default: a temp dir)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run before it is killed (default 900)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the runs' figures and the verdict here")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--amp", default="O2", help=argparse.SUPPRESS)
    p.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        return run_one(args)
    work = args.workdir or tempfile.mkdtemp(prefix="check_device_")
    data = os.path.join(work, "demo")
    ok = True
    t = args.timeout
    dev = launch(args.device, "O2", args.device != "CPU", args.steps, data, os.path.join(work, "device"), timeout=t)
    cpu = launch("CPU", "O0", False, args.steps, data, os.path.join(work, "cpu"), timeout=t)
    half = args.steps // 2
    first = launch(args.device, "O2", args.device != "CPU", half, data, os.path.join(work, "resume"), timeout=t)
    second = launch(args.device, "O2", args.device != "CPU", args.steps - half, data, os.path.join(work, "resume"),
                    resume=True, timeout=t) if first else None
    verdict = {"device": args.device, "steps": args.steps, "runs": {}, "checks": {}}
    device_run = f"{args.device} O2" + (" sink" if args.device != "CPU" else "")
    for name, r in ((device_run, dev), ("CPU float32", cpu), ("resume 1/2", first), ("resume 2/2", second)):
        verdict["runs"][name] = r
        if r is None:
            ok = False
            print(f"{name:<16} FAILED")
            continue
        ips = f"{r['images_per_s']:.1f}" if r["images_per_s"] else "-"
        print(f"{name:<16} {r['status']:<9} {r['iters']:>5} steps  {ips:>7} img/s  "
              f"{r['reads_per_step']:.3f} reads/step  compile {r['compile_s']}")
    if dev and cpu:
        d, c = dict(dev["windows"]), dict(cpu["windows"])
        common = sorted(set(d) & set(c))
        gap = sum(abs(d[k] - c[k]) / abs(c[k]) for k in common) / max(len(common), 1)
        print("loss per window (step: device / CPU): " + ", ".join(f"{k}: {d[k]:.2f}/{c[k]:.2f}" for k in common))
        print(f"mean relative gap device O2 vs CPU float32: {gap:.3f} (tolerance {args.tolerance})")
        ok &= gap <= args.tolerance
        verdict["checks"]["loss_gap"] = {"gap": gap, "tolerance": args.tolerance, "ok": gap <= args.tolerance}
    if first and second:
        steps = [s for s, _ in first["windows"]] + [s for s, _ in second["windows"]]
        cont = steps == sorted(steps) and len(set(steps)) == len(steps) and steps[-1] == args.steps - 1
        print(f"resume with sink: windows end at steps {steps}: {'continues' if cont else 'BROKEN'}")
        ok &= cont
        verdict["checks"]["resume_continues"] = {"window_ends": steps, "ok": cont}
    print("check_device: " + ("OK" if ok else "FAILED"))
    verdict["ok"] = bool(ok)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(verdict, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
