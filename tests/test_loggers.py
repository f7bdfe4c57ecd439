"""Issue 37 item 2, experiment trackers (``train.loggers``: MLflow, W&B): one short coco16
run (the early-stopping run of ``train.patience``, shared) logs into a local MLflow file store and an offline W&B run, read back with each package's
own reader and compared with ``metrics.jsonl``; fast tests for the missing package, rank != 0,
a tracker failing mid-run, the end statuses."""
import json
import struct
import sys

import pytest

from mindyolox.config import load_config
from mindyolox.errors import ConfigError
from mindyolox.training.hooks import TrainHook
from mindyolox.training.hooks.experiment import ExperimentHook, MlflowTracker, WandbTracker, flatten_record

from .conftest import ROOT

DEMO = ROOT / "configs" / "demo" / "yolox-nano-demo.yaml"


# --------------------------------------------------------------------------- readers
def _jsonl(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _wandb_records(path):
    """The protobuf records of a W&B ``.wandb`` file. Its format (W&B's datastore, LevelDB's
    log format): a 7-byte header ``:W&B``, magic 0xBEE1 (u16 LE), version (u8); then 32 KiB
    blocks of chunks, each ``crc32c u32, length u16, type u8`` (1 full, 2 first, 3 middle,
    4 last) and its bytes; a block's tail shorter than a chunk header is zero padding."""
    from wandb.proto import wandb_internal_pb2 as pb
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0)
    block, pos, parts, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(parts)
            out.append(rec)
    return out


def _wandb_history(records):
    """``{key: [(step, value)]}`` of the history records."""
    hist = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            step = r.history.step.num
            for item in r.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):
                    hist.setdefault(key, []).append((step, json.loads(item.value_json)))
    return hist


# --------------------------------------------------------------------------- the one run
class _ScriptedAP(TrainHook):
    """Replaces the evaluator by one returning the given AP50:95 values in turn (an eval record
    and best.ckpt at each, no evaluation graph to compile)."""

    def __init__(self, aps):
        self.aps = list(aps)

    def before_train(self, trainer):
        aps = self.aps

        class _Eval:
            def evaluate(self, model, progress=False):
                ap = aps.pop(0)
                stats = [ap] + [0.01 * i for i in range(1, 12)]
                return {"AP50_95": ap, "AP50": stats[1], "stats": stats, "timing": {"images": 16}}
        trainer.evaluator = _Eval()


class _Snapshot(TrainHook):
    """Every parameter (and BN statistic) of the model as the training starts."""

    def __init__(self):
        self.before = {}

    def before_train(self, trainer):
        self.before.update({n: p.asnumpy().copy() for n, p in trainer.model.parameters_and_names()})


class _Analysis(TrainHook):
    """Writes ``analysis/`` PNG and CSV files at the end, as issue 37 item 1's hook will."""
    priority = 92

    def after_train(self, trainer):
        (trainer.run_dir / "analysis").mkdir()
        (trainer.run_dir / "analysis" / "per_class.csv").write_text("class,P\na,1\n")
        (trainer.run_dir / "analysis" / "pr_curve.png").write_bytes(b"\x89PNG stand-in")


FROZEN_RUN = {}   # the trainer and the weights before training, for the freeze test


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """The early-stopping run of ``train.patience`` (nano on coco16, 160 px, batch 2, 8
    iterations an epoch, an evaluation each epoch, scripted APs: early-stopped after epoch 4),
    with ``train.loggers=[mlflow, wandb]``: MLflow into ``<run>/mlruns``, W&B offline under tmp,
    and ``train.freeze=[backbone, head.cls_preds]`` at ``basic_lr_per_img=0.005`` (test_train's
    learning rate: no divergence, the free parameters move visibly). One run for three features
    (patience, freeze, trackers): one train-step compile."""
    from mindyolox.training.trainer import Trainer

    from .test_train import coco16_cfg
    tmp = tmp_path_factory.mktemp("loggers")
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in (("WANDB_DIR", "wandb_dir"), ("WANDB_CACHE_DIR", "wandb_cache"),
                         ("WANDB_DATA_DIR", "wandb_data"), ("WANDB_CONFIG_DIR", "wandb_config")):
            (tmp / sub).mkdir()
            mp.setenv(var, str(tmp / sub))
        mp.setenv("WANDB_MODE", "offline")
        mp.delenv("WANDB_API_KEY", raising=False)
        cfg = coco16_cfg("train.eval_interval=1", "train.patience=2", "train.loggers=[mlflow, wandb]",
                         "train.tensorboard=false", "train.freeze=[backbone, head.cls_preds]",
                         "train.basic_lr_per_img=0.005", max_epoch=10)
        snapshot = _Snapshot()
        tr = Trainer(cfg, run_dir=tmp / "run", num_workers=0, progress=False,
                     hooks=[_ScriptedAP([0.10, 0.12, 0.11, 0.12, 0.5, 0.5]), _Analysis(), snapshot])
        status = tr.train()
        FROZEN_RUN.update(trainer=tr, before=snapshot.before)
    return tmp, tmp / "run", cfg, status


@pytest.mark.slow
def test_patience_ends_the_run_cleanly(tracked):
    """(moved from test_train_options.py: its run now also feeds the trackers)"""
    tmp, run, cfg, status = tracked
    assert status == "early_stopped"  # 0.11 and 0.12 do not beat 0.12: two stale evaluations
    records = _jsonl(run)
    assert [r["epoch"] for r in records if r["type"] == "eval"] == [1, 2, 3, 4]
    assert [r["epoch"] for r in records if r.get("event") == "early_stop"] == [4]
    assert (run / "last.ckpt").is_file() and (run / "best.ckpt").is_file()
    from mindyolox.training.checkpoint import read_meta
    assert read_meta(run / "best.ckpt")["epoch"] == 2
    log = (run / "train_log.txt").read_text()
    assert "early stop after epoch 4: 2 evaluation(s) without a better AP50:95 than 12.00" in log
    assert "early_stopped: 32 iterations" in log
    assert "warning" not in log


@pytest.mark.slow
def test_freeze_keeps_the_frozen_parts_bit_identical(tracked):
    """(moved from test_train_options.py: the trackers' run freezes the backbone and cls_preds)"""
    import numpy as np
    _, run, _, status = tracked
    tr, before = FROZEN_RUN["trainer"], FROZEN_RUN["before"]
    assert status == "early_stopped"  # the run ended normally (patience)
    after = {n: p.asnumpy() for n, p in tr.model.parameters_and_names()}
    frozen = [n for n in after if n.startswith(("backbone.backbone.", "head.cls_preds."))]
    free = [n for n in after if n not in frozen]
    assert len(frozen) > 100
    for n in frozen:  # weights and BN running statistics untouched
        np.testing.assert_array_equal(after[n], before[n], err_msg=n)
    changed = [n for n in free if not np.array_equal(after[n], before[n])]
    assert len(changed) > 0.9 * len(free), (len(changed), len(free))
    assert any("moving_mean" in n for n in changed)  # the neck's BN still learns its statistics
    # no optimizer state, no gradient for the frozen tensors
    trained = {p.name for p in tr.optimizer.params}
    assert not trained & set(frozen) and len(trained) == len([n for n in free if "moving_" not in n])
    log = (run / "train_log.txt").read_text()
    assert "frozen (backbone, head.cls_preds):" in log and "BatchNorm layers in eval mode" in log


@pytest.mark.slow
def test_mlflow_reads_back_every_metric_of_metrics_jsonl(tracked, monkeypatch):
    from mlflow.tracking import MlflowClient
    tmp, run, cfg, _ = tracked
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(run / "mlruns").as_uri())
    exp = client.get_experiment_by_name("mindyolox")
    (mrun,) = client.search_runs([exp.experiment_id])
    assert mrun.info.status == "FINISHED" and mrun.info.run_name == "run"
    records = _jsonl(run)
    kinds = {r["type"] for r in records}
    assert {"train", "eval", "time", "data"} <= kinds
    want, step = {}, 0
    for r in records:
        if r["type"] == "event":
            continue
        step = r.get("step", step)
        for key, value in r.items():
            if key in ("type", "step", "split") or isinstance(value, bool) or value is None:
                continue
            prefix = f"data/{r['split']}" if r["type"] == "data" else r["type"]
            if isinstance(value, list):
                names = ([f"{key}_{i}" for i in range(len(value))] if key != "stats" else
                         ["AP50_95", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
                          "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"])
                pairs = [(n, v) for n, v in zip(names, value) if not (key == "stats" and n in r)]
            else:
                pairs = [(key, value)]
            for n, v in pairs:
                want.setdefault(f"{prefix}/{n}", []).append((step, float(v)))
    assert len(want) > 30 and "eval/AP75" in want and "train/total" in want and "train/epoch" in want
    got = {k: [(m.step, m.value) for m in client.get_metric_history(mrun.info.run_id, k)] for k in want}
    assert set(mrun.data.metrics) == set(want)
    for key in want:
        assert sorted(got[key]) == sorted(want[key]), key
    # the recipe as params
    params = mrun.data.params
    assert params["train.max_epoch"] == "10" and params["data.input_size"] == "[160, 160]"
    assert params["train.loggers"] == "['mlflow', 'wandb']" and params["model.depth"] == str(cfg.model.depth)
    # artifacts: best.ckpt (not last.ckpt), the run's PNGs and the analysis folder
    top = {a.path for a in client.list_artifacts(mrun.info.run_id)}
    assert {"best.ckpt", "curves.png", "dataset_report.png", "analysis"} <= top and "last.ckpt" not in top
    assert {a.path for a in client.list_artifacts(mrun.info.run_id, "analysis")} == {
        "analysis/per_class.csv", "analysis/pr_curve.png"}
    local = client.download_artifacts(mrun.info.run_id, "best.ckpt", str(tmp / "dl"))
    assert open(local, "rb").read() == (run / "best.ckpt").read_bytes()


@pytest.mark.slow
def test_wandb_offline_run_folder_holds_the_same(tracked):
    tmp, run, cfg, _ = tracked
    (folder,) = (tmp / "wandb_dir" / "wandb").glob("offline-run-*")
    assert not list(run.glob("wandb"))  # WANDB_DIR wins over the run folder
    files = {p.relative_to(folder / "files").as_posix() for p in (folder / "files").rglob("*") if p.is_file()}
    assert {"best.ckpt", "curves.png", "dataset_report.png", "analysis/per_class.csv",
            "analysis/pr_curve.png"} <= files and "last.ckpt" not in files
    assert (folder / "files" / "best.ckpt").read_bytes() == (run / "best.ckpt").read_bytes()
    assert not any(p.is_symlink() for p in (folder / "files").rglob("*"))  # copies, not links into the run
    (wb,) = folder.glob("run-*.wandb")
    records = _wandb_records(wb)
    hist = _wandb_history(records)
    jsonl = _jsonl(run)
    train = [r for r in jsonl if r["type"] == "train"]
    evals = [r for r in jsonl if r["type"] == "eval"]
    assert [(s, v) for s, v in hist["train/total"]] == [(r["step"], r["total"]) for r in train]
    assert [(s, v) for s, v in hist["train/lr"]] == [(r["step"], r["lr"]) for r in train]
    assert hist["eval/AP50_95"] == [(r["step"], r["AP50_95"]) for r in evals]
    assert hist["eval/AP75"] == [(r["step"], r["stats"][2]) for r in evals]
    config = [u for r in records if r.WhichOneof("record_type") == "run" for u in r.run.config.update]
    config += [u for r in records if r.WhichOneof("record_type") == "config" for u in r.config.update]
    cfg_items = {u.key: json.loads(u.value_json) for u in config}
    assert cfg_items["train"]["max_epoch"] == 10 and cfg_items["data"]["input_size"] == [160, 160]
    assert cfg_items["train"]["patience"] == 2 and cfg_items["model"]["depth"] == cfg.model.depth
    exits = [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"]
    assert exits == [0]
    arts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert [a.type for a in arts] == ["model"] and any(e.path == "best.ckpt" for e in arts[0].manifest.contents)


# --------------------------------------------------------------------------- fast
def test_a_tracker_asked_for_but_not_installed_is_one_line_before_anything_runs(tmp_path, monkeypatch, capsys):
    from mindyolox.commands._args import run_cli
    from mindyolox.commands.train import main
    from mindyolox.training.trainer import Trainer
    monkeypatch.setitem(sys.modules, "mlflow", None)   # import mlflow / find_spec: not installed
    cfg = load_config(DEMO, ["train.loggers=[wandb, mlflow]"])
    with pytest.raises(ConfigError) as e:
        Trainer(cfg, run_dir=tmp_path / "run")
    assert str(e.value) == 'train.loggers has mlflow but the package is not installed: pip install mlflow-skinny==3.18.0'
    with pytest.raises(SystemExit) as ex:
        run_cli(lambda: main(["--config", str(DEMO), "--run-dir", str(tmp_path / "cli"), "train.loggers=[mlflow]"]))
    err = capsys.readouterr().err
    assert ex.value.code == 2
    assert err == 'error: train.loggers has mlflow but the package is not installed: pip install mlflow-skinny==3.18.0\n'
    assert not (tmp_path / "run").exists() and not (tmp_path / "cli").exists()
    with pytest.raises(ConfigError, match=r"'train.loggers' lists 'mlfow'; each must be one of tensorboard, mlflow"):
        load_config(DEMO, ["train.loggers=[mlfow]"])


class _Stand:
    """A tracker stand-in recording its calls; ``fail_at``: (method, call number) that raises."""

    def __init__(self, name, calls, fail_at=None):
        self.name, self.calls, self.fail_at, self.n = name, calls, fail_at, {}

    def _call(self, what, *args):
        self.n[what] = self.n.get(what, 0) + 1
        self.calls.append((self.name, what, *args))
        if self.fail_at == (what, self.n[what]):
            raise ConnectionError("tracking server at http://10.0.0.9:5000 unreachable\nsecond line")

    def start(self, recipe):
        self._call("start")

    def log(self, metrics, step):
        self._call("log", dict(metrics), step)

    def artifact(self, path, folder):
        self._call("artifact", path.name, folder)

    def end(self, status):
        self._call("end", status)


class _Trainer:
    def __init__(self, run_dir, rank=0, status="finished"):
        self.run_dir, self.rank, self.status, self.lines = run_dir, rank, status, []
        self.cfg = load_config(DEMO)
        self.tcfg = self.cfg.train

    def log(self, msg):
        self.lines.append(msg)


def _feed(hook, tr, records):
    hook.before_train(tr)
    for r in records:
        hook.after_record(tr, r)
    hook.after_train(tr)


RECORDS = [{"type": "event", "event": "start", "time": 1.0},
           {"type": "train", "epoch": 1, "iter": 2, "step": 1, "total": 3.0, "lr": 0.01, "size": [64, 64]},
           {"type": "train", "epoch": 1, "iter": 4, "step": 3, "total": 2.5, "lr": 0.02, "size": [64, 64]},
           {"type": "eval", "epoch": 1, "step": 4, "AP50_95": 0.1, "AP50": 0.2, "stats": [0.1, 0.2] + [0.3] * 10},
           {"type": "time", "total_s": 9.0},
           {"type": "event", "event": "end", "status": "finished", "time": 2.0}]


def test_rank_other_than_0_logs_nothing(tmp_path):
    from mindyolox.training.run_log import RunLog
    calls = []
    hook = ExperimentHook(lambda tr: [_Stand("a", calls)])
    (tmp_path / "best.ckpt").write_bytes(b"x")
    _feed(hook, _Trainer(tmp_path, rank=1), RECORDS)
    assert calls == []
    seen = []
    with RunLog(tmp_path, rank=1) as log:   # the tap itself: rank 1 writes no record and calls no listener
        log.listeners.append(seen.append)
        log.record({"type": "train", "step": 0})
    assert seen == [] and not (tmp_path / "metrics.jsonl").exists()
    with RunLog(tmp_path, rank=0) as log:
        log.listeners.append(seen.append)
        log.record({"type": "train", "step": 0})
    assert seen == [{"type": "train", "step": 0}]


def test_a_tracker_failing_mid_run_costs_one_warning_line(tmp_path):
    calls = []
    (tmp_path / "best.ckpt").write_bytes(b"x")
    (tmp_path / "last.ckpt").write_bytes(b"x")
    (tmp_path / "curves.png").write_bytes(b"x")
    (tmp_path / "mlruns" / "0").mkdir(parents=True)
    (tmp_path / "mlruns" / "0" / "copy.png").write_bytes(b"x")  # a tracker's own store: not an artifact
    hook = ExperimentHook(lambda tr: [_Stand("bad", calls, fail_at=("log", 2)), _Stand("good", calls)])
    tr = _Trainer(tmp_path)
    _feed(hook, tr, RECORDS)
    assert tr.lines == ["warning: bad logging stopped (the training goes on): ConnectionError: tracking server at "
                        "http://10.0.0.9:5000 unreachable"]
    bad = [c[1] for c in calls if c[0] == "bad"]
    assert bad == ["start", "log", "log"]   # never called again after the failure
    good = [c[1:] for c in calls if c[0] == "good"]
    assert good[0] == ("start",)
    logs = [c for c in good if c[0] == "log"]
    assert [s for _, _, s in logs] == [1, 3, 4, 4]   # the time record takes the last step
    assert logs[0][1] == {"train/epoch": 1.0, "train/iter": 2.0, "train/total": 3.0, "train/lr": 0.01,
                          "train/size_0": 64.0, "train/size_1": 64.0}
    assert logs[2][1]["eval/AP75"] == 0.3 and "eval/AP50_95" in logs[2][1] and "eval/AR1" in logs[2][1]
    assert good[-3:] == [("artifact", "curves.png", ""), ("artifact", "best.ckpt", ""), ("end", "finished")]


def test_end_status_of_the_real_trackers(tmp_path, monkeypatch):
    """A stopped or diverged run does not end its MLflow / W&B run as finished (module
    experiment's END_STATUS); W&B: one offline run, the interrupted case (exit code 1)."""
    from mlflow.tracking import MlflowClient
    for status, want in (("finished", "FINISHED"), ("interrupted", "KILLED"), ("diverged", "FAILED")):
        ml = MlflowTracker(tmp_path / "run", "", "e")
        ml.start({"train": {"max_epoch": 3}})
        ml.log({"train/total": float("nan") if status == "diverged" else 1.0}, 7)
        ml.end(status)
        mrun = MlflowClient(tracking_uri=(tmp_path / "run" / "mlruns").as_uri()).get_run(ml.run_id)
        assert mrun.info.status == want and mrun.data.tags["mindyolox.status"] == status
        assert mrun.data.params == {"train.max_epoch": "3"}
    monkeypatch.setenv("WANDB_MODE", "online")   # the recipe's mode wins
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wb"))
    wb = WandbTracker(tmp_path / "run", "p", "offline")
    wb.start({"train": {"max_epoch": 3}})
    wb.log({"train/total": 1.0}, 7)
    wb.end("interrupted")
    (wandb_file,) = (tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb")
    exits = [r.exit.exit_code for r in _wandb_records(wandb_file) if r.WhichOneof("record_type") == "exit"]
    assert exits == [1]


def test_flatten_record_names():
    assert flatten_record({"type": "event", "event": "checkpoint", "epoch": 1}) == {}
    assert flatten_record({"type": "data", "split": "val", "images": 16, "boxes_dropped": 0}) == {
        "data/val/images": 16.0, "data/val/boxes_dropped": 0.0}
