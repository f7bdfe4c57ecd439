"""The Ascend 310/910 recipe written beside an export with ``--target ascend``, as far as a
CPU host can take it (nothing here runs ATC or converter_lite, which need CANN).

Files, for a model ``<stem>.<ext>``:

- ``<stem>_aipp.cfg``: AIPP (the device-side preprocessing) doing the project's preprocessing
  from the letterboxed canvas on: input ``uint8 [B, H, W, 3]`` BGR (``RGB888_U8`` is 3 packed
  channels taken in the order given; ``rbuv_swap_switch: false`` keeps B, G, R), no colour
  conversion, mean 0, min 0, ``var_reci`` 1.0 (the network takes 0..255, no mean/std), output
  NCHW float to the first layer. AIPP cannot letterbox (its resize has no aspect-preserving
  mode, its padding is not top-left-only by a data-dependent amount): **the host still
  resizes by r = min(H/h, W/w) and pads top-left with 114** (``mindyolox.data.letterbox``)
  and sends the uint8 canvas (4x fewer bytes than float32).
- ONNX / AIR: ``<stem>_atc.sh``: ``atc`` with ``--framework`` 5 (ONNX) / 1 (AIR),
  ``--input_shape images:<B or -1>,3,H,W``, ``--dynamic_batch_size`` (ONNX exported with
  ``--dynamic-batch``; a fixed-batch graph has its batch baked into reshapes), the AIPP
  config, ``--soc_version``; output ``<stem>_ascend.om``.
- MindIR: ``<stem>_converter_lite.cfg`` (``[ascend_context]``: input shape, AIPP) and
  ``<stem>_converter_lite.sh`` (``converter_lite --fmk=MINDIR --optimize=ascend_oriented``),
  output ``<stem>_ascend.mindir`` for MindSpore Lite on Ascend (fixed batch: MindSpore
  exports MindIR with a static batch).
- ``<stem>_ascend.json``: the metadata of the converted model for ``deploy/infer.py`` /
  ``test.py --model``: same graph facts, ``aipp: true``, the device input, the batch sizes.
"""
import copy
import os

from .meta import write_meta

__all__ = ["aipp_config", "atc_command", "converter_lite_config", "write_recipe"]


def aipp_config(height, width):
    """AIPP text for a ``uint8 [H, W, 3]`` BGR letterboxed canvas -> float 0..255 BGR NCHW."""
    lines = ["aipp_op {", "    aipp_mode : static", "    related_input_rank : 0",
             "    input_format : RGB888_U8", f"    src_image_size_w : {int(width)}",
             f"    src_image_size_h : {int(height)}", "    crop : false", "    csc_switch : false",
             "    rbuv_swap_switch : false"]
    for c in range(3):
        lines += [f"    mean_chn_{c} : 0", f"    min_chn_{c} : 0.0", f"    var_reci_chn_{c} : 1.0"]
    return "\n".join(lines + ["}", ""])


def atc_command(model_file, meta, out_stem, aipp_file, batches, soc_version):
    """The ``atc`` command line (one string) for an ONNX / AIR export."""
    h, w = meta["input"]["shape"][2:4]
    dynamic = bool(meta["input"].get("dynamic_batch"))
    b = -1 if dynamic else int(meta["input"]["shape"][0])
    framework = 5 if meta["format"] == "ONNX" else 1
    parts = ["atc", f"--model={model_file}", f"--framework={framework}", f"--output={out_stem}",
             f"--soc_version={soc_version}", "--input_format=NCHW", f"--input_shape=images:{b},3,{h},{w}"]
    if dynamic:
        parts.append("--dynamic_batch_size=" + ",".join(str(int(x)) for x in batches))
    parts += [f"--insert_op_conf={aipp_file}", "--log=error"]
    return " ".join(parts)


def converter_lite_config(meta, aipp_file):
    """``[ascend_context]`` section for converter_lite (MindIR -> Ascend MindIR)."""
    b, _, h, w = meta["input"]["shape"]
    return "\n".join(["[ascend_context]", "input_format=NCHW", f"input_shape=images:[{b},3,{h},{w}]",
                      f"insert_op_config_file_path={aipp_file}", ""])


def write_recipe(model_path, meta, batches=(1, 4, 8), soc_version="Ascend310P3"):
    """Write the files of the module doc beside ``model_path``; returns their paths."""
    folder = os.path.dirname(os.path.abspath(model_path))
    stem = os.path.splitext(os.path.basename(model_path))[0]
    h, w = meta["input"]["shape"][2:4]
    written = []

    def put(name, text, mode=0o644):
        p = os.path.join(folder, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        written.append(p)

    aipp = f"{stem}_aipp.cfg"
    put(aipp, aipp_config(h, w))
    dynamic = bool(meta["input"].get("dynamic_batch"))
    sizes = [int(x) for x in batches] if dynamic else []
    if meta["format"] == "MINDIR":
        out_file = f"{stem}_ascend.mindir"
        cfg = f"{stem}_converter_lite.cfg"
        put(cfg, converter_lite_config(meta, aipp))
        put(f"{stem}_converter_lite.sh", "#!/bin/sh\n# needs MindSpore Lite's converter_lite (Ascend build) and CANN\n"
            f"cd \"$(dirname \"$0\")\" && converter_lite --fmk=MINDIR --modelFile={os.path.basename(model_path)} "
            f"--outputFile={stem}_ascend --saveType=MINDIR --optimize=ascend_oriented --configFile={cfg}\n", 0o755)
    else:
        out_file = f"{stem}_ascend.om"
        cmd = atc_command(os.path.basename(model_path), meta, f"{stem}_ascend", aipp, batches, soc_version)
        put(f"{stem}_atc.sh", "#!/bin/sh\n# needs CANN's atc (source set_env.sh first)\n"
            f"cd \"$(dirname \"$0\")\" && {cmd}\n", 0o755)
    om = copy.deepcopy(meta)
    om.update({"format": "OM" if out_file.endswith(".om") else "MINDIR", "file": out_file, "target": "ascend",
               "converted_from": os.path.basename(model_path), "aipp": aipp, "dynamic_batch_sizes": sizes,
               "device_input": {"shape": ["B" if dynamic else meta["input"]["shape"][0], h, w, 3],
                                "dtype": "uint8", "layout": "NHWC",
                                "host_does": "letterbox: resize by r = min(H/h, W/w), top-left on 114",
                                "aipp_does": "uint8 HWC BGR -> float NCHW BGR 0..255 (no mean/std)"},
               "soc_version": soc_version})
    p = os.path.join(folder, f"{stem}_ascend.json")
    write_meta(p, om)
    written.append(p)
    return written
