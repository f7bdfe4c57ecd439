"""Device check of the training path, step by step (issue 24, deliverable 8): three checks
with a JSON verdict, each run a subprocess with a time limit, the whole within a budget.

    python -m bench.check_device --device Ascend --json verdict.json       # ~10 min budget
    python -m bench.check_device --device CPU --steps 6 --resume-at 3 --size 160 --json v.json

Checks (per check ``pass`` / ``fail`` / ``skipped``, with the reason and the figures):

``sink_equality``
    An O0 run with data sink against the same run without (nano, the demo recipe, a fixed
    small demo dataset, ``--steps`` steps, no evaluation, ``deterministic`` on). Every batch
    the train step receives is checksummed on the device as it arrives (a probe around the
    step, :class:`BatchProbe`, through the trainer's ``TrainHook.wrap_step``: with sink these
    are the device queue's tensors), and the step's loss is kept; per step both runs must
    give the same checksums and losses (``--rtol``). This catches batches fed in the wrong
    order, repeated or dropped, and a sink graph that computes something else. On CPU it is
    skipped: MindSpore refuses data sink on CPU (``mindspore/train/data_sink.py:222-225``).
``simota``
    The SimOTA assignment of fixed batches (synthetic head outputs and ground truth from a
    seeded generator, :func:`simota_batches`; one batch with saturated logits) computed on
    the device and, in another process, with ``device_target=CPU``, with the assigner the
    trainer uses on that device (float16-safe ranking on Ascend). Foreground masks, matched
    gts and dynamic ks are compared; a difference passes only when it is a tie: the anchors
    exchanged in a gt's selection have equal costs (CPU costs, within ``--tie-rtol``), an
    anchor claimed by two gts was decided between equal costs, or a dynamic k differs where
    the sum of the top-10 IoUs is within 1e-4 of an integer. On CPU both processes run on CPU.
``resume``
    A run stopped after ``--resume-at`` steps (``max_iters``), then resumed from its
    ``last.ckpt`` in another process (both with sink on a device): every step of both parts
    must receive the batch (checksum) and give the loss of the uninterrupted run without
    sink (which ``sink_equality`` shows equal to the uninterrupted sink run).

Every run is a case process (:func:`train_job`, :func:`simota_job`, run by
:func:`bench.harness.run_case`) with a time limit (``--timeout`` s, and never beyond what is
left of ``--budget``, 600 s by default): at the limit its whole process group is killed and
its check fails with the reason. All runs share one MindSpore compile cache in the work folder
(``--no-cache`` turns it off), so only the first run compiles the train step. Budget on one
device: 2 x ``--steps`` + ``--steps`` steps of nano at ``--size`` (batch 2) and 4 compiles
of which 3 come from the cache, plus two small SimOTA graphs.

``--corrupt-step K`` is the check's self-test: the runs compared against the reference run
without sink (the sink run, the resumed run) add 1 to every pixel of the batch its step ``K`` receives; the
checks that compare those steps must then fail. ``--reuse`` keeps the result of a run from
an earlier call with the same ``--workdir`` when its command line was the same (corrupted
runs are never kept). Exit code 0 when no check failed.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from bench import harness

ROOT = str(harness.ROOT)

CHECKS = ("sink_equality", "simota", "resume")
SINK_REFUSED = "skipped: data sink refused on CPU (MindSpore's data_sink needs Ascend or GPU)"


# ============================================================================ worker: training
def _batch_checksum_cell():
    """A graph computing, per sample of a batch tensor ``[B, ...]`` (any dtype), the sum of
    its values and their sum weighted by position (``1 + index % 251``): float32 ``[B, 2]``.
    A reordered, repeated or changed sample changes it."""
    import mindspore as ms
    from mindspore import nn, ops

    class BatchChecksum(nn.Cell):
        def construct(self, x):
            x = x.astype(ms.float32).reshape(x.shape[0], -1)
            w = (ops.arange(x.shape[1], dtype=ms.int32) % 251 + 1).astype(ms.float32)
            return ops.stack((x.sum(1), (x * w).sum(1)), 1)
    return BatchChecksum()


def make_probe(corrupt_step=None):
    """A :class:`~mindyolox.training.trainer.TrainHook` whose ``wrap_step`` puts
    :class:`BatchProbe` between the feeder and the train step."""
    from mindyolox.training.trainer import TrainHook

    class BatchProbe(TrainHook):
        """Per step (global index from the start or resume position): the checksums of the
        images and labels the step receives and the step's loss, kept on the device until :meth:`read`.
        ``corrupt_step``: add 1 to the images of that step's batch (the self-test)."""

        def __init__(self):
            self.records = []

        def wrap_step(self, trainer, step):
            cell = _batch_checksum_cell()
            self.k = trainer.start_epoch * trainer.steps_per_epoch + trainer.start_iter

            def probed(*batch):  # (images, labels, size): the size is a graph constant, not data
                if self.k == corrupt_step:
                    batch = (batch[0] + 1,) + tuple(batch[1:])
                sums = [cell(x) for x in batch[:2]]
                out = step(*batch)
                self.records.append((self.k, sums, out[0]))
                self.k += 1
                return out
            return probed

        def read(self):
            return [{"step": k, "checksum": [s.asnumpy().tolist() for s in sums], "loss": float(loss.asnumpy())}
                    for k, sums, loss in self.records]
    return BatchProbe()


def train_job(device, data, size, random_size, batch, steps, run_dir, sink=False, cache="", resume_from=None,
              corrupt_step=None):
    """Case: one training run (nano, the demo recipe on ``data``, ``steps`` steps, no evaluation)
    with :class:`BatchProbe`; returns its status, iterations, compile seconds per input size
    and the probe's per-step records."""
    import mindspore as ms
    ms.set_device(device)
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_deterministic(True)  # mindspore/device_manager.py:118
    from mindyolox import load_config
    from mindyolox.training.trainer import Trainer
    from mindyolox.options import resolve_options
    lo, hi = random_size
    cfg = load_config(os.path.join(ROOT, "configs", "demo", "yolox-nano-demo.yaml"), [
        f"data.data_dir={data}", f"data.input_size=[{size},{size}]",
        f"data.test_size=[{size},{size}]", f"data.random_size=[{lo},{hi}]", "train.amp_level=O0",
        f"train.batch_size={batch}", "train.print_interval=10", "train.max_epoch=10",
        "train.warmup_epochs=1", "train.no_aug_epochs=1"])
    probe = make_probe(corrupt_step)
    resume = resume_from or False
    tr = Trainer(cfg, resolve_options(cfg), run_dir=run_dir, resume=resume, exist_ok=True,
                 data_sink=sink, max_iters=steps, num_workers=2, progress=False, evaluate=False,
                 hooks=[probe], compile_cache=cache or None)
    status = tr.train()
    return {"status": status, "iters": tr.iters_done, "sink": bool(sink and device != "CPU"),
            "compile_s": {f"{h}x{w}": round(t, 1) for (h, w), t in tr.sizes_seen.items()},
            "steps": probe.read()}


# ============================================================================ worker: SimOTA
def simota_batches(seed=0, size=320, batch=2, num_classes=80, max_labels=16):
    """Fixed SimOTA inputs (numpy, the same in every process): anchors of a ``size`` input
    (strides 8/16/32, row-major), predictions near the anchors, 3-8 ground-truth boxes per
    image; the second image's logits are x10 (saturated sigmoids). Keys: boxes ``[B, A, 4]``
    cxcywh px, obj ``[B, A]``, cls ``[B, A, C]``, grids ``[A, 2]``, strides ``[A]``, labels
    ``[B, max_labels, 5]`` (class, cx, cy, w, h; zero rows padding)."""
    rng = np.random.default_rng(seed)
    grids, strides = [], []
    for s in (8, 16, 32):
        yy, xx = np.meshgrid(np.arange(size // s), np.arange(size // s), indexing="ij")
        grids.append(np.stack([xx.ravel(), yy.ravel()], 1))
        strides.append(np.full(xx.size, s))
    grids = np.concatenate(grids).astype(np.float32)
    strides = np.concatenate(strides).astype(np.float32)
    a = len(strides)
    centres = (grids + 0.5) * strides[:, None]
    xy = centres[None] + rng.normal(0, 3, (batch, a, 2)) * strides[None, :, None] / 8
    wh = strides[None, :, None] * np.exp(rng.normal(1.2, 0.6, (batch, a, 2)))
    labels = np.zeros((batch, max_labels, 5), np.float32)
    for b in range(batch):
        n = int(rng.integers(3, 9))
        w, h = rng.uniform(12, size / 2, n), rng.uniform(12, size / 2, n)
        cx, cy = rng.uniform(w / 2, size - w / 2), rng.uniform(h / 2, size - h / 2)
        labels[b, :n] = np.stack([rng.integers(0, num_classes, n), cx, cy, w, h], 1)
    scale = np.array([1.0, 10.0] + [1.0] * (batch - 2))[:batch]
    return {"boxes": np.concatenate([xy, wh], 2).astype(np.float32),
            "obj": (rng.normal(-2, 2, (batch, a)) * scale[:, None]).astype(np.float32),
            "cls": (rng.normal(-3, 2, (batch, a, num_classes)) * scale[:, None, None]).astype(np.float32),
            "grids": grids, "strides": strides, "labels": labels}


def simota_job(device, tiered, out_file):
    """Case: the assignment of :func:`simota_batches` on ``device``, saved to ``out_file`` (npz)."""
    import mindspore as ms
    ms.set_device(device)
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_deterministic(True)  # mindspore/device_manager.py:118
    from mindspore import Tensor
    from mindspore import dtype as mstype

    from mindyolox.losses import SimOTAAssigner, gt_valid_mask
    x = simota_batches()
    assigner = SimOTAAssigner(x["cls"].shape[-1], tiered=bool(tiered))
    lab = Tensor(x["labels"])
    out = assigner(Tensor(x["boxes"]), Tensor(x["obj"]), Tensor(x["cls"]), Tensor(x["grids"]),
                   Tensor(x["strides"]), lab[..., 1:5], lab[..., 0].astype(mstype.int32), gt_valid_mask(lab), None)
    res = {k: v.asnumpy() for k, v in out.items()}
    res["gt_valid"] = gt_valid_mask(lab).asnumpy()
    np.savez(out_file, **res)
    return {"file": out_file, "fg": int(res["fg_mask"].sum())}


# ============================================================================ comparisons
def compare_steps(ref, other, rtol):
    """Per global step present in ``other``: same checksums and loss as in ``ref`` (lists of
    :meth:`BatchProbe.read` records). Returns ``(ok, figures)``."""
    by_step = {r["step"]: r for r in ref}
    steps = [r["step"] for r in other]
    missing = [k for k in steps if k not in by_step]
    chk_diff, loss_diff, bad = 0.0, 0.0, []
    for r in other:
        if r["step"] not in by_step:
            continue
        q = by_step[r["step"]]
        c1 = np.concatenate([np.ravel(c) for c in q["checksum"]])
        c2 = np.concatenate([np.ravel(c) for c in r["checksum"]])
        d_c = float(np.max(np.abs(c1 - c2) / np.maximum(np.abs(c1), 1.0))) if c1.shape == c2.shape else np.inf
        d_l = abs(q["loss"] - r["loss"]) / max(abs(q["loss"]), 1e-12)
        if not np.isfinite(r["loss"]):
            d_l = np.inf
        chk_diff, loss_diff = max(chk_diff, d_c), max(loss_diff, d_l)
        if d_c > rtol or d_l > rtol:
            bad.append(r["step"])
    ok = bool(steps) and not missing and not bad
    return ok, {"steps": steps, "missing_in_reference": missing, "mismatched_steps": bad,
                "max_checksum_rel_diff": chk_diff, "max_loss_rel_diff": loss_diff, "rtol": rtol,
                "losses": {"reference": [by_step[k]["loss"] for k in steps if k in by_step],
                           "this": [r["loss"] for r in other]}}


def compare_simota(cpu, dev, tie_rtol):
    """Device against CPU assignment (npz dicts of :func:`run_simota`); differences must be
    ties (module doc). Returns ``(ok, figures)``."""
    tier = ~cpu["in_both"]
    real = cpu["cost"].astype(np.float64) - 1e5 * tier          # the ranking key without the penalty
    usable = cpu["candidate"][:, None, :] & cpu["gt_valid"][:, :, None]
    usable_dev = dev["candidate"][:, None, :] & dev["gt_valid"][:, :, None]
    cost_diff = float(np.max(np.abs(cpu["cost"] - dev["cost"])[usable])) if usable.any() else 0.0
    top10 = np.sort(np.where(usable, cpu["ious"], 0.0), axis=2)[..., -10:].sum(2)
    close = lambda u, v: bool(np.allclose(u, v, rtol=tie_rtol, atol=1e-6))  # noqa: E731
    f = {"fg_cpu": int(cpu["fg_mask"].sum()), "fg_device": int(dev["fg_mask"].sum()),
         "max_abs_cost_diff": cost_diff, "candidates_equal": bool((usable == usable_dev).all()),
         "dynamic_k_diff": 0, "gt_selection_diff": 0, "conflict_diff": 0, "explained_by_ties": 0,
         "unexplained": [], "tie_rtol": tie_rtol}
    b_n, g_n, _ = real.shape
    for b in range(b_n):
        for g in np.flatnonzero(cpu["gt_valid"][b]):
            k1, k2 = int(cpu["dynamic_ks"][b, g]), int(dev["dynamic_ks"][b, g])
            if k1 != k2:
                f["dynamic_k_diff"] += 1
                near = abs(top10[b, g] - round(top10[b, g])) < 1e-4
                f["explained_by_ties"] += near
                if not near:
                    f["unexplained"].append(f"batch {b} gt {g}: dynamic k {k1} on CPU, {k2} on the device")
                continue
            s1, s2 = np.flatnonzero(cpu["matching"][b, g]), np.flatnonzero(dev["matching"][b, g])
            if set(s1) != set(s2):
                f["gt_selection_diff"] += 1
                tie = (len(s1) == len(s2) and sorted(tier[b, g, s1]) == sorted(tier[b, g, s2])
                       and close(np.sort(real[b, g, s1]), np.sort(real[b, g, s2])))
                f["explained_by_ties"] += tie
                if not tie:
                    f["unexplained"].append(f"batch {b} gt {g}: anchors {sorted(set(s1) ^ set(s2))[:8]} "
                                            "exchanged between unequal costs")
        for a in np.flatnonzero(cpu["fg_mask"][b] & dev["fg_mask"][b]):
            g1, g2 = int(cpu["matched_gt"][b, a]), int(dev["matched_gt"][b, a])
            if g1 != g2:
                f["conflict_diff"] += 1
                tie = tier[b, g1, a] == tier[b, g2, a] and close(real[b, g1, a], real[b, g2, a])
                f["explained_by_ties"] += tie
                if not tie:
                    f["unexplained"].append(f"batch {b} anchor {a}: gt {g1} on CPU, {g2} on the device")
    ok = not f["unexplained"] and f["candidates_equal"] and f["fg_cpu"] > 0
    return ok, f


# ============================================================================ the parent
class Launcher:
    """Subprocesses with a time limit each, within an overall budget; results kept in the
    work folder for ``--reuse``."""

    def __init__(self, work, timeout, budget, reuse):
        self.work, self.timeout, self.reuse = work, float(timeout), bool(reuse)
        self.deadline = time.monotonic() + float(budget)
        self.runs = {}

    def __call__(self, name, job, kwargs, keep=True, fresh_dir=None):
        """Run case ``job`` (``train_job`` / ``simota_job``) with ``kwargs`` (``fresh_dir``
        emptied first unless the run is reused); returns ``(result or None, reason)``."""
        stored = os.path.join(self.work, f"{name}.result.json")
        call = {"job": job, "kwargs": kwargs}
        if self.reuse and keep and os.path.isfile(stored):
            with open(stored) as f:
                saved = json.load(f)
            if saved.get("call") == call:
                self.runs[name] = {"status": "reused", "seconds": saved["seconds"]}
                return saved["result"], None
        if fresh_dir:
            shutil.rmtree(fresh_dir, ignore_errors=True)
        left = self.deadline - time.monotonic()
        limit = min(self.timeout, left)
        if left < 5:
            self.runs[name] = {"status": "not run", "reason": "budget used up"}
            return None, f"{name}: not run, the --budget was used up"
        print(f"+ {name}: {' '.join(harness.case_command('check_device', job, kwargs)[1:])} (limit {limit:.0f} s)",
              file=sys.stderr, flush=True)
        try:
            result = harness.run_case("check_device", job, kwargs, timeout=limit)
        except harness.CaseError as e:
            run = e.run
            if run.timed_out:  # the run and its data workers were killed
                self.runs[name] = {"status": "timeout", "seconds": round(run.wall_s, 1), "limit_s": limit,
                                   "pid": run.pid}
                return None, f"{name}: no result within {limit:.0f} s (killed)"
            tail = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
            self.runs[name] = {"status": "failed", "seconds": round(run.wall_s, 1), "exit": run.rc,
                               "stderr_tail": run.stderr[-2000:]}
            return None, f"{name}: exit code {run.rc}: {tail}"
        seconds = round(result["wall_s"], 1)
        self.runs[name] = {"status": "ok", "seconds": seconds}
        if keep:
            with open(stored, "w") as f:
                json.dump({"call": call, "seconds": seconds, "result": result}, f)
        elif os.path.isfile(stored):
            os.remove(stored)
        return result, None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="Ascend", choices=("Ascend", "GPU", "CPU"))
    p.add_argument("--steps", type=int, default=20, help="steps of each full run (default 20)")
    p.add_argument("--resume-at", type=int, default=8, help="steps before the stop of the resume check")
    p.add_argument("--size", type=int, default=320, help="input size (default 320)")
    p.add_argument("--random-size", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                   help="multiscale range in units of 32 (default: --size/32 - 1 .. --size/32)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--rtol", type=float, default=1e-6, help="per-step checksum / loss tolerance (relative)")
    p.add_argument("--tie-rtol", type=float, default=1e-3, help="costs this close count as a SimOTA tie")
    p.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated subset of {','.join(CHECKS)}")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per subprocess before it is killed")
    p.add_argument("--budget", type=float, default=600.0, help="seconds for the whole check (default 600)")
    p.add_argument("--workdir", default=None, help="runs, data and compile cache (default: a temp dir)")
    p.add_argument("--no-cache", action="store_true", help="no shared MindSpore compile cache")
    p.add_argument("--reuse", action="store_true", help="reuse runs of an earlier call in the same --workdir")
    p.add_argument("--corrupt-step", type=int, default=None, metavar="K",
                   help="self-test: perturb the batch of step K in the compared runs (the verdict must fail)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the verdict here")
    args = p.parse_args(argv)
    if args.random_size is None:
        args.random_size = (max(1, args.size // 32 - 1), args.size // 32)
    checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        p.error(f"unknown check(s) {unknown}; choose from {list(CHECKS)}")
    if not 0 < args.resume_at < args.steps:
        p.error(f"--resume-at must be in 1..{args.steps - 1}")
    t_start = time.monotonic()
    work = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="check_device_"))
    os.makedirs(work, exist_ok=True)
    launch = Launcher(work, args.timeout, args.budget, args.reuse)
    sink = args.device != "CPU"
    verdict = {"device": args.device, "steps": args.steps, "resume_at": args.resume_at, "size": args.size,
               "random_size": list(args.random_size), "batch": args.batch, "budget_s": args.budget,
               "corrupt_step": args.corrupt_step, "checks": {}, "runs": launch.runs}

    def record(name, status, reason=None, **figures):
        verdict["checks"][name] = {"status": status, "reason": reason, "figures": figures}
        print(f"{name:<14} {status.upper()}" + (f": {reason}" if reason else ""), flush=True)

    train_checks = [c for c in checks if c in ("sink_equality", "resume")]
    if train_checks:
        from mindyolox.data.demo import DemoSpec, ensure_demo
        data = os.path.join(work, "demo")
        n_train = args.batch * (args.steps + 1)  # one epoch covers every step of the check
        ensure_demo(data, DemoSpec(num_train=n_train, num_val=2), progress=False)
        cache = "" if args.no_cache else os.path.join(work, "compile_cache")
        base = dict(device=args.device, data=data, size=args.size, random_size=list(args.random_size),
                    batch=args.batch, cache=cache)

        def train(name, steps, use_sink, corrupt=False, resume_from=None):
            run_dir = os.path.join(work, name)
            kwargs = dict(base, steps=steps, run_dir=run_dir, sink=use_sink, resume_from=resume_from,
                          corrupt_step=args.corrupt_step if corrupt else None)
            return launch(name, "train_job", kwargs, keep=not (corrupt and args.corrupt_step is not None),
                          fresh_dir=run_dir)

        plain, plain_why = train("plain", args.steps, False)
        if "sink_equality" in checks:
            if not sink:
                record("sink_equality", "skipped", SINK_REFUSED)
            else:
                sinked, sink_why = train("sink", args.steps, True, corrupt=True)
                if plain is None or sinked is None:
                    record("sink_equality", "fail", plain_why or sink_why)
                else:
                    ok, fig = compare_steps(plain["steps"], sinked["steps"], args.rtol)
                    fig.update(compile_s={"plain": plain["compile_s"], "sink": sinked["compile_s"]})
                    record("sink_equality", "pass" if ok else "fail",
                           None if ok else f"steps {fig['mismatched_steps'] or fig['missing_in_reference']} differ", **fig)
        if "resume" in checks:
            ref, ref_why = plain, plain_why  # with sink: the run sink_equality shows equal to the sink run
            first, why1 = train("stopped", args.resume_at, sink)
            second, why2 = (None, "the stopped run failed")
            if first is not None:
                ckpt = os.path.join(work, "stopped", "last.ckpt")
                second, why2 = train("resumed", args.steps - args.resume_at, sink, corrupt=True, resume_from=ckpt)
            if ref is None or first is None or second is None:
                record("resume", "fail", ref_why if ref is None else (why1 if first is None else why2))
            else:
                ok1, f1 = compare_steps(ref["steps"], first["steps"], args.rtol)
                ok2, f2 = compare_steps(ref["steps"], second["steps"], args.rtol)
                cont = [r["step"] for r in second["steps"]][:1] == [args.resume_at]
                ok = ok1 and ok2 and cont
                reason = None if ok else ("the resumed run does not start at step "
                                          f"{args.resume_at}" if not cont else
                                          f"steps {f1['mismatched_steps'] + f2['mismatched_steps']} differ from the "
                                          "uninterrupted run")
                record("resume", "pass" if ok else "fail", reason, sink=sink, resumed_first_step=
                       (second["steps"][0]["step"] if second["steps"] else None), before_stop=f1, after_resume=f2)
    if "simota" in checks:
        tiered = int(args.device == "Ascend")  # the assigner the trainer uses there (builder.py)
        outs, why = {}, None
        for name, dev in (("simota_cpu", "CPU"), ("simota_device", args.device)):
            path = os.path.join(work, f"{name}.npz")
            res, why = launch(name, "simota_job", dict(device=dev, tiered=tiered, out_file=path))
            if res is None:
                break
            outs[name] = dict(np.load(res["file"]))
        if len(outs) < 2:
            record("simota", "fail", why)
        else:
            ok, fig = compare_simota(outs["simota_cpu"], outs["simota_device"], args.tie_rtol)
            fig["tiered_keys"] = bool(tiered)
            record("simota", "pass" if ok else "fail",
                   None if ok else "; ".join(fig["unexplained"][:3]) or "candidate masks differ", **fig)
    failed = [c for c, v in verdict["checks"].items() if v["status"] == "fail"]
    verdict["ok"] = not failed
    verdict["elapsed_s"] = round(time.monotonic() - t_start, 1)
    print(f"check_device: {'OK' if not failed else 'FAILED (' + ', '.join(failed) + ')'} "
          f"in {verdict['elapsed_s']:.0f} s; work folder {work}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(verdict, f, indent=1)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(harness.main(main))
