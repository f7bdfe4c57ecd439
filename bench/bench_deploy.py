"""Speed (and optionally COCO AP) of every deployment path, side by side in one sitting.

    flock /tmp/mindyolox-heavy.lock python -m bench.bench_deploy \
        --official-s /tmp/yolox_s_official.onnx --ap          # the README table

Cases (nano at 416 with the official COCO weights unless said; yolox-s at 640 random init):

- ``predict.py``: the MindSpore Cell as predict.py builds it (CPU options: im2col, BN folded
  in graph, decoded outputs), GRAPH_MODE;
- ``MindIR CPU``: ``deploy/export.py`` default CPU MindIR (fused BN, im2col), one export per
  batch (MindIR batch is fixed), ``mindspore`` GraphCell;
- ``MindIR native``: the same with ``--conv native`` (Conv2D: what Ascend gets), batch 1;
- ``ONNX fp32``: our dynamic-batch ONNX under onnxruntime (CPU provider);
- ``ONNX int8``: that model after ``deploy/quantize.py`` (32 calibration images of
  coco_tiny train2017);
- ``official ONNX``: ``../shared/weights/yolox_nano.onnx`` (static batch 1: batches 4 and 8
  are 4 / 8 calls);
- ``yolox-s ONNX`` ours vs ``official-s`` (``--official-s``: made by the official
  ``tools/export_onnx.py``, see ../shared/anchors/official-yolox/README.md), batch 1.

Timing: the network call only, on a preprocessed batch (no loading, letterbox or NMS), after
``--warmup`` calls (compilation excluded). ``--rounds`` rounds interleave the cases (each
round runs every case ``--runs`` times), so a slower minute hits every case alike; latency
median and p90 over all timed calls of batch 1 (:func:`bench.harness.timed` per case and
round); throughput = batch / median call time at batch 1, 4 and 8. The cases share one
process on purpose: they alternate within it. ``--ap``: COCO AP50:95 / AP50 of each nano
artifact on coco_tiny val (416, conf 0.01, NMS 0.65) through ``test.py --model``'s evaluator. Prints a Markdown table and
writes ``--json``.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

from bench import harness

ROOT, SHARED = harness.ROOT, harness.SHARED
BATCHES = (1, 4, 8)


def _export(cfg_name, weights, work, name, **kw):
    from mindyolox.config import load_config
    from mindyolox.deploy.export import ExportSpec, export
    size = kw.pop("size", 416)
    spec = ExportSpec(img_size=(size, size), **kw)
    return export(load_config(ROOT / "configs" / cfg_name), weights, spec, str(work / name), log=lambda *a: None)[0]


def build_cases(args, work):
    """name -> {batch: callable(x)}, plus name -> artifact path (for --ap)."""
    import mindspore as ms
    from mindyolox.deploy.runners import open_runner
    nano_w = str(SHARED / "weights" / "yolox_nano.pth")
    cases, files = {}, {}

    def runner_fn(path):
        r = open_runner(path, "cpu", "mindspore")
        return lambda x: r(x)

    print("exporting ...", flush=True)
    from mindyolox import load_config
    from mindyolox.runtime.context import build_and_load
    cell, _ = build_and_load(load_config(ROOT / "configs" / "yolox-nano.yaml"), nano_w)
    cases["predict.py (MindSpore Cell)"] = {b: (lambda x: cell(ms.Tensor(x)).asnumpy()) for b in BATCHES}
    mindir = {}
    for b in BATCHES:
        p = _export("yolox-nano.yaml", nano_w, work, f"nano_b{b}", fmt="MINDIR", batch=b)
        mindir[b] = runner_fn(p)
        files.setdefault("MindIR CPU (im2col)", p)
    cases["MindIR CPU (im2col)"] = mindir
    p = _export("yolox-nano.yaml", nano_w, work, "nano_native_b1", fmt="MINDIR", batch=1, conv="native")
    cases["MindIR native Conv2D"] = {1: runner_fn(p)}
    onnx_path = _export("yolox-nano.yaml", nano_w, work, "nano", fmt="ONNX", dynamic_batch=True)
    files["ONNX fp32 (ours)"] = onnx_path
    ours = runner_fn(onnx_path)
    cases["ONNX fp32 (ours)"] = {b: ours for b in BATCHES}
    from mindyolox.deploy.quantize import calibration_batches, quantize_onnx
    from mindyolox.deploy.meta import meta_path
    int8 = str(work / "nano_int8.onnx")
    quantize_onnx(onnx_path, int8, calibration_batches(str(SHARED / "data" / "coco_tiny" / "train2017"),
                                                      (416, 416), args.calib))
    meta = json.loads(Path(meta_path(onnx_path)).read_text())
    meta["graph"]["dtype"] = "int8"
    Path(meta_path(int8)).write_text(json.dumps(meta))
    files["ONNX int8 (ours)"] = int8
    q = runner_fn(int8)
    cases["ONNX int8 (ours)"] = {b: q for b in BATCHES}
    # the official nano ONNX, run by the same runner through a metadata file written here
    official = work / "official_nano.onnx"
    shutil.copy(SHARED / "weights" / "yolox_nano.onnx", official)
    meta_o = dict(meta, input=dict(meta["input"], shape=[1, 3, 416, 416], dynamic_batch=False))
    meta_o["graph"] = dict(meta["graph"], node_count=None)
    Path(meta_path(official)).write_text(json.dumps(meta_o))
    files["official yolox_nano.onnx"] = str(official)
    off = runner_fn(official)
    cases["official yolox_nano.onnx"] = {b: off for b in BATCHES}
    if args.official_s:
        s_path = _export("yolox-s.yaml", None, work, "s", fmt="ONNX", dynamic_batch=False, size=640)
        cases["yolox-s ONNX (ours, 640)"] = {1: runner_fn(s_path)}
        import onnxruntime as ort
        sess = ort.InferenceSession(args.official_s, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        cases["yolox-s ONNX (official, 640)"] = {1: lambda x: sess.run(None, {name: x})}
    return cases, files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10, help="timed calls per case and round at batch 1 (fewer at 4/8)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--calib", type=int, default=32, help="int8 calibration images")
    parser.add_argument("--official-s", help="yolox_s ONNX made by the official tools/export_onnx.py")
    parser.add_argument("--ap", action="store_true", help="also the COCO AP of each nano artifact")
    parser.add_argument("--work", default="runs/bench_deploy", help="where the exports go")
    parser.add_argument("--json", default="runs/bench_deploy/results.json")
    args = parser.parse_args(argv)
    import mindspore as ms
    import numpy as np
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cases, files = build_cases(args, work)
    rng = np.random.RandomState(0)
    inputs = {}
    for name, fns in cases.items():
        size = 640 if "640" in name else 416
        for b in fns:
            inputs[(size, b)] = inputs.get((size, b), rng.uniform(0, 255, (b, 3, size, size)).astype(np.float32))
            for _ in range(args.warmup):  # compilation included, before any case is timed
                _call(fns[b], b, inputs[(size, b)], name)
    times = {(n, b): [] for n, fns in cases.items() for b in fns}
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        for name, fns in cases.items():
            size = 640 if "640" in name else 416
            for b, fn in fns.items():
                runs = max(2, args.runs // b) if b > 1 else args.runs
                t = harness.timed(lambda: _call(fn, b, inputs[(size, b)], name), runs, warmup=0, first=False)
                times[(name, b)] += t.times_s
    aps = {}
    if args.ap:
        aps = measure_aps(files)
    rows = []
    for name, fns in cases.items():
        t1 = times.get((name, 1), [])
        row = {"case": name, "median_ms": 1000 * statistics.median(t1) if t1 else None,
               "p90_ms": 1000 * float(np.percentile(t1, 90)) if t1 else None,
               "throughput": {b: b / statistics.median(times[(name, b)]) for b in fns},
               "ap": aps.get(name)}
        rows.append(row)
    print_table(rows)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    harness.write_json(args.json, {"rows": rows, "load": os.getloadavg(), "cpu": harness.cpu_line(),
                                   "versions": harness.versions(), "settings": vars(args)})
    return 0


def _call(fn, b, x, name):
    """Official nano ONNX is static batch 1: batch b is b calls."""
    if name.startswith("official yolox_nano") and b > 1:
        for i in range(b):
            fn(x[i:i + 1])
        return
    fn(x)


def measure_aps(files):
    from mindyolox.data import COCODataset, create_eval_loader
    from mindyolox.evaluation.artifacts import open_artifact
    from mindyolox.evaluation import COCOEvaluator
    root = SHARED / "data" / "coco_tiny"
    ds = COCODataset(root / "annotations" / "instances_val2017.json", root / "val2017")
    out = {}
    for name, path in files.items():
        net = open_artifact(path, "cpu", "mindspore")
        loader = create_eval_loader({"test_size": [416, 416], "num_workers": 0}, net.runner.batch or 8, dataset=ds)
        r = COCOEvaluator(loader, conf=0.01, nms=0.65).evaluate(net, progress=False)
        out[name] = (round(100 * r["AP50_95"], 2), round(100 * r["AP50"], 2))
        print(f"AP {name}: {out[name]}", flush=True)
    return out


def print_table(rows):
    print("| case | latency b1 median / p90 (ms) | images/s b1 / b4 / b8 | AP50:95 / AP50 (coco_tiny) |")
    print("|---|---|---|---|")
    for r in rows:
        tp = " / ".join(f"{r['throughput'][b]:.1f}" if b in r["throughput"] else "-" for b in BATCHES)
        lat = f"{r['median_ms']:.1f} / {r['p90_ms']:.1f}" if r["median_ms"] else "-"
        ap = f"{r['ap'][0]:.2f} / {r['ap'][1]:.2f}" if r["ap"] else "-"
        print(f"| {r['case']} | {lat} | {tp} | {ap} |")


if __name__ == "__main__":
    sys.exit(harness.main(main))
