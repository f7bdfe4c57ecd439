"""Does a short fine-tune from the folded nano weights raise its AP? (issue 33, case 6)

    python -m bench.finetune_folded                 # coco16 at 320, 12 epochs, ~6-10 min on 2 cores
    python -m bench.finetune_folded --epochs 12 --json out.json

The shared nano file (``../shared/weights/yolox_nano.pth``, recovered from an ONNX export) has
its BatchNorm folded into the convolutions; the trainer re-inflates it before training
(``mindyolox/training/bn_reinflate.py``). This runs what a user would: nano from that file
fine-tuned on coco16 at 320 px (train = val, no Mosaic), the recipe's lr (1.25e-3 at batch 8),
2 warm-up epochs then constant, the last ``epochs - 2`` without augmentation, an evaluation
(EMA weights) after every epoch. Printed: the AP50:95 of the weights before training and after
each epoch. Measured (Intel Xeon @ 2.80GHz, 2026-12-04, two runs, start 19.4):
19.2 12.9 13.9 15.9 11.6 13.0 13.3 11.4 23.3 24.6 24.2 26.5 and
19.2 12.9 13.9 17.1 18.4 22.7 22.1 7.6 2.4 16.8 23.5 31.8 -- the middle epochs differ between
runs (a full-lr fine-tune of 16 images is unstable there), the end is above the start in both.
The test suite keeps the cheaper check of the same fix (``tests/test_folded_bn.py``: one epoch
on coco128 keeps AP near its start, where it fell to 0.00 before).
"""
import argparse
import sys

from bench import harness


def finetune(epochs=12, size=320):
    """Case: the fine-tune of the module doc; a :func:`bench.harness.record` whose ``extra``
    holds ``start`` and ``aps`` (AP50:95 in %, per epoch) and ``seconds`` of the training."""
    import json
    import tempfile
    from pathlib import Path

    from mindyolox import build_model, load_config
    from mindyolox.convert.weights import load_weights
    from mindyolox.data import COCODataset
    from mindyolox.evaluation import evaluate
    from mindyolox.runtime.context import setup_mindspore
    from mindyolox.training.trainer import Trainer

    setup_mindspore("CPU")
    root, weights = harness.SHARED / "data" / "coco16", str(harness.SHARED / "weights" / "yolox_nano.pth")
    cfg = load_config(str(harness.ROOT / "configs" / "yolox-nano.yaml"), [
        f"data.data_dir={root}", "data.val_ann=annotations/instances_train2017.json", "data.val_images=train2017",
        f"data.input_size=[{size},{size}]", f"data.test_size=[{size},{size}]", "data.random_size=[]",
        "data.multiscale_range=0", "aug.mosaic_prob=0.0", "train.batch_size=8", f"train.max_epoch={epochs}",
        "train.warmup_epochs=2", f"train.no_aug_epochs={max(epochs - 2, 0)}", "train.basic_lr_per_img=1.5625e-4",
        "train.min_lr_ratio=1.0", "train.print_interval=2", "train.eval_interval=1", "train.save_interval=0",
        "train.tensorboard=false", "train.bn_calibration_images=32"])
    model = build_model(cfg)
    load_weights(model, weights)
    data = COCODataset(root / "annotations" / "instances_train2017.json", root / "train2017")
    start = 100 * evaluate(model, data, img_size=(size, size), progress=False)["AP50_95"]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        seconds, status = harness.once(lambda: Trainer(cfg, run_dir=run, weights=weights, num_workers=1,
                                                       progress=False).train())
        records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    aps = [100 * r["AP50_95"] for r in records if r.get("type") == "eval"]
    return harness.record(f"finetune_folded:nano:{size}:{epochs}", None, start=start, aps=aps, status=status,
                          seconds=seconds)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--json", help="write the record to this file")
    args = p.parse_args(argv)
    print(f"nano from the folded weights, coco16 at {args.size}, {args.epochs} epochs; {harness.cpu_line()}, "
          f"{harness.load_info()}", flush=True)
    rec = harness.run_case("finetune_folded", "finetune", {"epochs": args.epochs, "size": args.size})
    ex = rec["extra"]
    print(f"AP50:95 before {ex['start']:.1f}; after each epoch " + " ".join(f"{a:.1f}" for a in ex["aps"])
          + f"; {ex['status']} in {ex['seconds']:.0f} s", flush=True)
    if ex["aps"]:
        print(f"end {ex['aps'][-1]:.1f} vs start {ex['start']:.1f}: {'raised' if ex['aps'][-1] > ex['start'] else 'NOT raised'}")
    if args.json:
        harness.write_json(args.json, rec)


if __name__ == "__main__":
    sys.exit(harness.main(main))
