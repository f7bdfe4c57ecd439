"""Run an exported YOLOX MindIR on images, folders or videos (MindSpore, or MindSpore Lite).

    python deploy/infer.py --mindir runs/export/yolox-nano_416x416_b1.mindir \
        --source ../shared/data/images/dog.jpg

Same preprocessing (``mindyolox.data.preproc``) and postprocessing (official ``postprocess``,
demo defaults conf 0.25 / NMS 0.45) as ``predict.py``, and the same outputs in ``--save-dir``
(default runs/infer). The input size, batch, strides and class names come from the
``<name>.json`` written by ``deploy/export.py`` beside the MindIR; without it, give
``--img-size``; batch 1 and the 80 COCO names are then assumed.
``--backend lite`` runs MindSpore Lite (``mindspore_lite`` package) instead of
``mindspore.nn.GraphCell``; ``auto`` (default) uses Lite when it is installed.
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindyolox.engine.runtime import parse_img_size  # noqa: E402
from mindyolox.errors import MindYOLOXError, WeightsError  # noqa: E402
from mindyolox.utils.cli import run_cli  # noqa: E402
from mindyolox.commands.predict import add_predict_args, check_thresholds, report  # noqa: E402


def read_meta(mindir):
    """The ``.json`` written by export.py beside ``mindir`` (``{}`` when absent)."""
    meta_path = os.path.splitext(mindir)[0] + ".json"
    if not os.path.isfile(meta_path):
        return {}
    try:
        with open(meta_path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise MindYOLOXError(f"export metadata {meta_path} is unreadable ({e})") from None


class _Captured:
    text = ""


@contextlib.contextmanager
def _native_stderr_captured():
    """Capture what native code writes to file descriptor 2 inside the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    captured = _Captured()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.text = tmp.read().decode(errors="replace")


class MindIRRunner:
    """``float32 [n, 3, H, W] -> numpy [n, A, 5+C]`` through an exported graph of fixed
    batch ``B``: inputs with ``n < B`` rows are padded (114 grey) and the extra rows dropped."""

    def __init__(self, path, batch, img_size, backend="mindspore"):
        self.batch, self.img_size, self.backend = int(batch), tuple(img_size), backend
        if backend == "lite":
            import mindspore_lite as mslite
            context = mslite.Context()
            context.target = ["cpu"]
            self.model = mslite.Model()
            try:
                self.model.build_from_file(path, mslite.ModelType.MINDIR, context)
            except (RuntimeError, ValueError) as e:
                first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
                raise WeightsError(f"{path}: MindSpore Lite cannot build it ({first.strip()})") from None
        else:
            import mindspore as ms
            from mindspore import nn
            ms.set_context(mode=ms.GRAPH_MODE)
            with _native_stderr_captured() as captured:
                try:
                    graph = ms.load(path)
                except (RuntimeError, ValueError) as e:
                    first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
                    # MindSpore's C++ log lines about the failure are dropped: this line says it
                    raise WeightsError(f"{path}: not a loadable MindIR ({first.strip()})") from None
            sys.stderr.write(captured.text)
            self.model = nn.GraphCell(graph)

    def __call__(self, x):
        n = len(x)
        if n > self.batch:
            raise ValueError(f"{n} images for a graph of batch {self.batch}")
        if n < self.batch:
            pad = np.full((self.batch - n,) + x.shape[1:], 114, np.float32)
            x = np.concatenate([x, pad])
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.backend == "lite":
            inputs = self.model.get_inputs()
            inputs[0].set_data_from_numpy(x)
            out = self.model.predict(inputs)[0].get_data_to_numpy()
        else:
            import mindspore as ms
            out = self.model(ms.Tensor(x)).asnumpy()
        return out[:n]


def pick_backend(name):
    """``mindspore`` | ``lite`` | ``auto`` (Lite when ``mindspore_lite`` imports)."""
    if name == "mindspore":
        return name
    try:
        import mindspore_lite  # noqa: F401
        return "lite"
    except ImportError:
        if name == "lite":
            raise MindYOLOXError("--backend lite: the mindspore_lite package is not installed") from None
        return "mindspore"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mindir", required=True, help="exported .mindir (deploy/export.py)")
    parser.add_argument("--img-size", type=int, nargs="+", help="input size S or H W (default: from the .json)")
    parser.add_argument("--backend", default="auto", choices=["auto", "mindspore", "lite"])
    add_predict_args(parser, save_dir="runs/infer")
    args = parser.parse_args(argv)
    check_thresholds(args)
    if not os.path.isfile(args.mindir):
        raise WeightsError(f"MindIR file not found: {args.mindir}")
    meta = read_meta(args.mindir)
    if args.img_size:
        img_size = parse_img_size(args.img_size)
    elif "input_shape" in meta:
        img_size = tuple(int(v) for v in meta["input_shape"][2:4])
    else:
        raise MindYOLOXError(f"{args.mindir}: no export metadata (.json) beside it; give --img-size")
    if meta.get("outputs", "raw") != "raw":
        raise MindYOLOXError(f"{args.mindir}: expected raw outputs, metadata says {meta.get('outputs')!r}")
    from mindyolox.engine.predictor import COCO_CLASSES, Predictor, list_source, run_prediction
    list_source(args.source)
    if args.device:
        import mindspore as ms
        ms.set_device(args.device)
    backend = pick_backend(args.backend)
    batch = int(meta.get("input_shape", [1])[0])
    runner = MindIRRunner(args.mindir, batch, img_size, backend)
    strides = tuple(meta.get("strides", (8, 16, 32)))
    names = tuple(meta.get("class_names") or COCO_CLASSES)
    predictor = Predictor(runner, img_size, args.conf, args.nms, args.class_agnostic,
                          raw_outputs=True, strides=strides)
    print(f"running {args.mindir} with {backend} (input {batch}x3x{img_size[0]}x{img_size[1]})")
    save_dir = None if args.no_save else args.save_dir
    out = run_prediction(predictor, args.source, save_dir, names, progress=not args.no_progress)
    report(out, save_dir)
    return 0


if __name__ == "__main__":
    run_cli(main)
