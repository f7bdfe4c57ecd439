"""Checkpoint integrity (issue 33, cases 2, 8 and 11a): nothing lost, nothing silently wrong.

* 2: checkpoints carry MindSpore's CRC32 and a format version; a flipped byte is one line
  naming the file and the previous good checkpoint; ``--weights`` checks it too; a file
  written before the CRC (the old way) still resumes, with a note; ``last.ckpt`` keeps the file
  it replaces as ``last.prev.ckpt``; weights holding NaN/Inf are never written over a
  checkpoint, and the divergence line names a checkpoint only if it loads and checks.
* 8: a ``kill -9`` during the first save leaves temporary files: ``--resume`` says to start
  again, and that start works (the temporary files are removed under the run lock).
* 11a: a ``last.ckpt`` cut at an entry boundary is "cut short", and the line points to
  ``last.prev.ckpt``.

Unit tests on small Cells; the trainer's own methods on hand-made run folders; one short
training run (slow) for the old-format resume and the real save path.
"""
import json

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from mindyolox.config import load_config
from mindyolox.convert.ckpt_file import CheckpointDamaged, crc_status
from mindyolox.convert.weights import load_weights, save_checkpoint
from mindyolox.training.checkpoint import (NonFiniteWeights, load_training_state, read_meta, save_training_state)
from mindyolox.training.hooks.checkpoint import read_resume_meta, run_folder
from mindyolox.training.hooks.logging import log_window
from mindyolox.training.trainer import Trainer, TrainingDiverged
from mindyolox.errors import MindYOLOXError, WeightsError

from .conftest import ROOT
from .train_subprocess import train_in_subprocess

DEMO = ROOT / "configs" / "demo" / "yolox-nano-demo.yaml"


def _net(seed=0):
    ms.set_seed(seed)
    net = nn.Dense(64, 32)
    net.weight.set_data(Tensor(np.random.RandomState(seed).randn(32, 64).astype(np.float32)))
    return net


def _save(path, net, step, keep_previous=False):
    return save_training_state(path, net, meta={"epoch": 0, "iter": step, "global_step": step},
                               keep_previous=keep_previous)


def _save_old_way(path, net, step):
    """What mindyolox wrote before checkpoint format 2: no CRC, no ``format`` in meta_json."""
    entries = [{"name": "model." + n, "data": p} for n, p in net.parameters_and_names()]
    ms.save_checkpoint(entries, str(path), append_dict={"meta_json": json.dumps(
        {"epoch": 0, "iter": step, "global_step": step})})


def _flip_inside_weight(path):
    """Flip one bit in the middle of the first tensor's bytes (``model.weight``: 8 KB)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x40
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def _entry_ends(path):
    """Byte offsets after each whole entry (where a cut still parses), trailer excluded."""
    from mindspore.train.checkpoint_pb2 import Checkpoint
    data = path.read_bytes()[:-17]
    ends, pos = [], 0
    while pos < len(data):  # each entry is one length-delimited field 1 (tag 0x0a) of Checkpoint
        assert data[pos] == 0x0A
        n, shift, i = 0, 0, pos + 1
        while True:
            b = data[i]
            n |= (b & 0x7F) << shift
            i += 1
            shift += 7
            if not b & 0x80:
                break
        pos = i + n
        ends.append(pos)
    c = Checkpoint()
    c.ParseFromString(data[:ends[0]])
    assert len(c.value) == 1
    return ends


def _trainer(run, **kw):
    tr = Trainer(load_config(DEMO, ["data.data_dir=unused"]), run_dir=run, progress=False, **kw)
    tr.max_epoch = 10
    return tr


# --------------------------------------------------------------------------- 2: CRC, format, flipped bytes
def test_checkpoints_carry_a_crc_and_the_format_version(tmp_path):
    _save(tmp_path / "last.ckpt", _net(), 3)
    assert crc_status(tmp_path / "last.ckpt") == "ok"
    assert read_meta(tmp_path / "last.ckpt")["format"] == 2
    save_checkpoint(_net(), tmp_path / "weights.ckpt")  # tools convert-weights output
    assert crc_status(tmp_path / "weights.ckpt") == "ok"


def test_a_flipped_byte_inside_a_tensor_is_one_line_and_nothing_is_loaded(tmp_path):
    path = tmp_path / "last.ckpt"
    _save(path, _net(0), 3)
    _flip_inside_weight(path)
    target = _net(1)
    before = target.weight.asnumpy().copy()
    for load in (lambda: read_meta(path), lambda: load_training_state(path, target)):
        with pytest.raises(CheckpointDamaged) as e:
            load()
        assert str(e.value) == f"{path}: CRC check failed, the file is damaged (its bytes changed after it was written)"
    assert np.array_equal(target.weight.asnumpy(), before)
    # --weights (fine-tune, test.py, predict.py) reads .ckpt through load_weights: checked as well
    save_checkpoint(_net(0), tmp_path / "w.ckpt")
    _flip_inside_weight(tmp_path / "w.ckpt")
    with pytest.raises(WeightsError, match=r"w\.ckpt: CRC check failed"):
        load_weights(target, tmp_path / "w.ckpt")
    assert np.array_equal(target.weight.asnumpy(), before)


def test_resume_from_a_damaged_last_ckpt_names_the_previous_good_one(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _save(run / "last.ckpt", _net(0), 8, keep_previous=True)
    _save(run / "last.ckpt", _net(1), 16, keep_previous=True)  # the step-8 file becomes last.prev.ckpt
    _flip_inside_weight(run / "last.ckpt")
    with pytest.raises(CheckpointDamaged) as e:
        read_resume_meta(_trainer(run, resume=True))
    msg = str(e.value)
    assert msg == (f"{run / 'last.ckpt'}: CRC check failed, the file is damaged (its bytes changed after it was "
                   f"written); the newest good checkpoint is {run / 'last.prev.ckpt'} (step 8): continue with "
                   f"--resume {run / 'last.prev.ckpt'}")
    tr = _trainer(run, resume=run / "last.prev.ckpt")  # the advice works
    assert read_resume_meta(tr)["global_step"] == 8 and tr.start_iter == 8


def test_a_checkpoint_written_before_the_crc_still_loads_with_a_note(tmp_path):
    path = tmp_path / "last.ckpt"
    src = _net(0)
    _save_old_way(path, src, 5)
    assert crc_status(path) == "none"
    notes, target = [], _net(1)
    meta = load_training_state(path, target, notes=notes)
    assert meta["global_step"] == 5 and np.array_equal(target.weight.asnumpy(), src.weight.asnumpy())
    assert notes == ["note: last.ckpt has no CRC (written before checkpoint format 2): loaded unchecked; "
                     "the next save adds one"]
    assert load_weights(_net(1), path).prefix == "model."  # --weights too
    # --resume of such a run folder: the note is logged, the position read
    run = tmp_path / "run"
    run.mkdir()
    _save_old_way(run / "last.ckpt", src, 5)
    tr = _trainer(run, resume=True)
    assert read_resume_meta(tr)["global_step"] == 5 and "has no CRC" in tr.notes[0]


def test_last_ckpt_keeps_the_file_it_replaces_but_never_a_damaged_one(tmp_path):
    last, prev = tmp_path / "last.ckpt", tmp_path / "last.prev.ckpt"
    _save(last, _net(0), 1, keep_previous=True)
    assert not prev.exists()
    first = last.read_bytes()
    _save(last, _net(1), 2, keep_previous=True)
    assert prev.read_bytes() == first and read_meta(last)["global_step"] == 2
    _flip_inside_weight(last)  # damaged on disk: the next save must not make it the previous one
    _save(last, _net(2), 3, keep_previous=True)
    assert prev.read_bytes() == first and read_meta(last)["global_step"] == 3
    _save(tmp_path / "best.ckpt", _net(0), 3)
    _save(tmp_path / "best.ckpt", _net(0), 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt", "last.prev.ckpt"]


def test_weights_with_nan_are_never_written_over_a_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    _save(path, _net(0), 4, keep_previous=True)
    good = path.read_bytes()
    bad = _net(1)
    w = bad.weight.asnumpy()
    w[3, 5] = np.inf
    bad.weight.set_data(Tensor(w))
    with pytest.raises(NonFiniteWeights, match=r"not saving last\.ckpt: NaN/Inf in model\.weight"):
        _save(path, bad, 5, keep_previous=True)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


class _Options:
    def to_dict(self):
        return {}


def _fake_run(run, net):
    """A Trainer with just what ``save`` / ``log_window`` use (no model build, no compile)."""
    from mindyolox.training.run_log import RunLog
    tr = _trainer(run)
    tr.model, tr.ema_model, tr.step, tr.optimizer = net, None, None, None
    tr.options, tr.epoch, tr.iter, tr.steps_per_epoch = _Options(), 0, 5, 8
    tr.timing = {k: 0.0 for k in ("eval_s", "ckpt_s", "step_s", "data_s", "compile_s")}
    tr.runlog = RunLog(run)
    tr.lr_schedule = lambda k: 0.01
    tr.overflow_steps = 0
    return tr


def test_the_nan_stop_names_only_a_checkpoint_that_loads_and_checks(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _save(run / "last.ckpt", _net(0), 8, keep_previous=True)
    _save(run / "last.ckpt", _net(1), 16, keep_previous=True)
    _flip_inside_weight(run / "last.ckpt")
    tr = _fake_run(run, _net(2))

    class _Step:  # the window's device sums: the loss went NaN
        def read_stats(self):
            return dict({k: float("nan") for k in ("total", "iou", "obj", "cls", "l1", "num_fg")},
                        steps=2.0, skipped=0.0, scale=1.0)

    tr.step = _Step()
    tr.window["steps"] = 2
    with pytest.raises(TrainingDiverged) as e:
        log_window(tr)
    msg = str(e.value)
    assert msg.startswith("loss is nan in the 2 step(s) up to epoch 1 iter 6 (step 5, lr 0.01); stopping. ")
    assert msg.endswith(f"The last good checkpoint is kept: {run / 'last.prev.ckpt'} (step 8); continue from it "
                        f"with --resume {run / 'last.prev.ckpt'}. Lower the lr or check the data.")
    assert tr.status == "diverged"


def test_a_save_of_nan_weights_stops_the_run_and_keeps_last_ckpt(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _save(run / "last.ckpt", _net(0), 8, keep_previous=True)
    good = (run / "last.ckpt").read_bytes()
    net = _net(1)
    w = net.weight.asnumpy()
    w[0, 0] = np.nan
    net.weight.set_data(Tensor(w))
    tr = _fake_run(run, net)
    with pytest.raises(TrainingDiverged) as e:
        tr.save("last", tr.checkpoint_meta())
    assert str(e.value) == (f"the weights hold NaN/Inf after 5 steps, so last.ckpt was not written over "
                            f"(model.weight); stopping. The last good checkpoint is kept: {run / 'last.ckpt'} "
                            f"(step 8); continue from it with --resume {run / 'last.ckpt'}. Lower the lr or "
                            "check the data.")
    assert (run / "last.ckpt").read_bytes() == good and not (run / "last.prev.ckpt").exists()


# --------------------------------------------------------------------------- 8: kill -9 during the first save
def _killed_during_first_save(run):
    """What a start killed (-9) while writing its first last.ckpt leaves: the files a start
    writes, and MindSpore's half-written temporary file of our temporary name."""
    run.mkdir()
    (run / "config.yaml").write_text("name: demo\n")
    (run / "train_log.txt").write_text("training 2 epochs x 8 iterations\n")
    (run / "metrics.jsonl").write_text('{"type": "event", "event": "start"}\n')
    _save(run / "whole.ckpt", _net(0), 8)
    (run / ".last.ckpt.tmp.tmp").write_bytes((run / "whole.ckpt").read_bytes()[:5000])
    (run / "whole.ckpt").unlink()


def test_a_kill_during_the_first_save_leaves_a_folder_that_starts_again(tmp_path):
    run = tmp_path / "run"
    _killed_during_first_save(run)
    with pytest.raises(MindYOLOXError) as e:
        read_resume_meta(_trainer(run, resume=True))
    assert str(e.value) == (f"nothing to resume: {run} holds no last.ckpt; no checkpoint was saved yet (a save was "
                            "cut off: .last.ckpt.tmp.tmp): start the run again without --resume")
    tr = _trainer(run)  # the advice: a plain start takes the folder, removes the temporary file
    with run_folder(tr):
        assert [p.name for p in run.iterdir()] == [".run.lock"]
        assert tr.notes[0] == (f"note: removed .last.ckpt.tmp.tmp in {run}: temporary file(s) of a "
                               "checkpoint save that did not finish")
    assert not (run / ".run.lock").exists()


def test_stale_temp_files_go_when_a_run_is_resumed_under_the_lock(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _save(run / "last.ckpt", _net(0), 8, keep_previous=True)
    (run / ".last.ckpt.tmp.ckpt").write_bytes(b"half")
    (run / ".last.prev.ckpt.tmp.ckpt").write_bytes(b"")
    (run / "notes.tmp").write_text("the user's")  # not ours: stays
    tr = _trainer(run, resume=True)
    with run_folder(tr):
        assert sorted(p.name for p in run.iterdir()) == [".run.lock", "last.ckpt", "notes.tmp"]


# --------------------------------------------------------------------------- 11a: cut at an entry boundary
def test_a_last_ckpt_cut_at_an_entry_boundary_is_cut_short_and_points_to_the_previous(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    net = _net(0)
    opt_net = _net(1)

    class _Opt:  # momentum buffers under optimizer/momentum/<name>, as the trainer writes them
        params = list(net.get_parameters())
        moments = list(opt_net.get_parameters())

    def save(step):
        save_training_state(run / "last.ckpt", net, optimizer=_Opt(),
                            meta={"epoch": 0, "iter": step, "global_step": step}, keep_previous=True)
    save(8)
    save(16)
    whole = (run / "last.ckpt").read_bytes()
    ends = _entry_ends(run / "last.ckpt")
    assert len(ends) == 5  # model.weight, model.bias, 2 momentum buffers, meta_json
    for cut in ends[2:]:  # after the model, after a momentum buffer, before the CRC trailer
        (run / "last.ckpt").chmod(0o644)
        (run / "last.ckpt").write_bytes(whole[:cut])
        with pytest.raises(CheckpointDamaged) as e:
            read_resume_meta(_trainer(run, resume=True))
        msg = str(e.value)
        assert msg.startswith(f"{run / 'last.ckpt'}: cut short (truncated): "), msg
        assert msg.endswith(f"the newest good checkpoint is {run / 'last.prev.ckpt'} (step 8): continue with "
                            f"--resume {run / 'last.prev.ckpt'}"), msg
        assert "--weights" not in msg
    # cut inside the model entries: nothing but model.* left, as in plain weights; the run's own
    # last.ckpt is known to be a training checkpoint, so it is still "cut short"
    (run / "last.ckpt").write_bytes(whole[:ends[0]])
    with pytest.raises(CheckpointDamaged, match=r"last\.ckpt: cut short \(truncated\): no meta_json, the entry a "
                                                r"training checkpoint writes last; the newest good checkpoint is "
                                                r".*last\.prev\.ckpt \(step 8\)"):
        read_resume_meta(_trainer(run, resume=True))
    # --resume FILE of plain weights: the line says what it may be, and what to do
    save_checkpoint(net, tmp_path / "plain.ckpt")
    with pytest.raises(WeightsError, match=r"plain\.ckpt: no meta_json entry, so not a whole mindyolox training "
                                           r"checkpoint: plain weights \(fine-tune from them with --weights\) or a "
                                           r"checkpoint cut short before its last entry; the newest good checkpoint"):
        read_resume_meta(_trainer(run, resume=tmp_path / "plain.ckpt"))


def test_weights_from_a_cut_short_training_checkpoint_are_refused(tmp_path):
    """--weights last.ckpt (fine-tune, test.py, predict.py) of a file cut inside its EMA entries:
    the EMA found would be partial, so it is refused, not loaded as far as it goes."""
    net = _net(0)
    path = tmp_path / "last.ckpt"
    save_training_state(path, net, ema_model=_net(1), meta={"epoch": 0, "iter": 1, "global_step": 1})
    ends = _entry_ends(path)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:ends[2]])  # model.weight, model.bias, ema.weight
    with pytest.raises(CheckpointDamaged, match=r"last\.ckpt: cut short \(truncated\): training-checkpoint entries "
                                                r"but no meta_json"):
        load_weights(_net(2), path)


# --------------------------------------------------------------------------- one real run (slow)
@pytest.mark.slow
def test_a_run_resumes_from_a_checkpoint_written_before_the_crc(tmp_path):
    """A real last.ckpt rewritten exactly as mindyolox wrote it before format 2 (no CRC, no
    ``format``) resumes; the next save has a CRC and keeps the old file as last.prev.ckpt."""
    run = tmp_path / "run"
    # each run in a fresh process (tests/train_subprocess.py): the resume loads the first one's
    # graphs from the cache (a second Trainer in this process would compile them again)
    kw = dict(run_dir=run, num_workers=0, progress=False, evaluate=False, compile_cache=tmp_path / "cache")
    assert train_in_subprocess(dict(trainer=dict(kw, max_iters=2)), tmp_path / "spec")["status"] == "stopped"
    params = ms.load_checkpoint(str(run / "last.ckpt"), crc_check=True)
    meta = json.loads(str(params.pop("meta_json")))
    assert meta.pop("format") == 2 and meta["global_step"] == 2
    (run / "last.ckpt").unlink()
    ms.save_checkpoint([{"name": k, "data": v} for k, v in params.items()], str(run / "last.ckpt"),
                       append_dict={"meta_json": json.dumps(meta)})
    old = (run / "last.ckpt").read_bytes()
    assert crc_status(run / "last.ckpt") == "none"
    tr = train_in_subprocess(dict(trainer=dict(kw, max_iters=1, resume=True)), tmp_path / "spec")
    assert tr["status"] == "stopped" and tr["start_iter"] == 2
    log = (run / "train_log.txt").read_text()
    assert "note: last.ckpt has no CRC (written before checkpoint format 2): loaded unchecked" in log
    assert crc_status(run / "last.ckpt") == "ok" and read_meta(run / "last.ckpt")["global_step"] == 3
    assert (run / "last.prev.ckpt").read_bytes() == old


def test_checkpoints_get_the_usual_file_mode(tmp_path):
    """MindSpore's save_checkpoint leaves a file read-only (0400); ours get 0666 less the umask,
    as any new file (last.ckpt, last.prev.ckpt, convert-weights' output)."""
    import os
    from mindyolox.utils.files import umask
    old = os.umask(0o027)
    try:
        assert umask() == 0o027
        last = _save(tmp_path / "last.ckpt", _net(), 1)
        _save(tmp_path / "last.ckpt", _net(1), 2, keep_previous=True)
        save_checkpoint(_net(), tmp_path / "w.ckpt")
    finally:
        os.umask(old)
    for name in ("last.ckpt", "last.prev.ckpt", "w.ckpt"):
        assert (os.stat(tmp_path / name).st_mode & 0o777) == 0o640, name
    assert str(last).endswith("last.ckpt")
