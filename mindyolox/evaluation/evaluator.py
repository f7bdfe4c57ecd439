"""COCO and VOC evaluation of a YOLOX model, as the official 0.3.0 ``COCOEvaluator`` /
``VOCEvaluator`` do it.

Pipeline per batch: letterboxed images ``[B, 3, H, W]`` (``mindyolox.data`` eval loader) ->
the model in eval mode (decoded ``[B, A, 5+C]``) -> :func:`mindyolox.utils.postprocess.postprocess`
(``score = obj * cls >= conf``, NMS) -> boxes divided by the letterbox ratio
``r = min(H / h, W / w)`` (``h, w`` from the annotation file) -> COCO: xyxy -> xywh, class id
-> category id through ``dataset.class_ids``, pycocotools ``COCOeval`` (bbox); VOC: per-class
AP (``voc_eval.py``) at IoU 0.5:0.95, 11-point (VOC07) and area (VOC10+) metrics.

The model is called directly (a ``Cell``: in GRAPH_MODE it is compiled on the first batch and
re-used for every later batch and every later call with the same input shape), so the
trainer can call :func:`evaluate` every N epochs on the same (EMA) model without recompiling.
The last batch is padded to the full batch size by the loader (padding rows are ignored),
so one shape -- one compilation -- serves a whole dataset.

Results (a dict, see :func:`evaluate`) use fractions in [0, 1] like ``COCOeval.stats``; the
printed tables use percent, like the official logs.

Distributed (``rank``/``world_size`` of an evaluator, under ``msrun``): each rank runs the
model on its shard (whole batches of the single-process order, :class:`~mindyolox.data.loader.EvalSource`),
the detections are gathered to every rank (``AllGather``, bit-exact), rank 0 computes the
metrics and sends them to every rank (``AllReduce`` of its bytes), so every rank returns the
same AP. Ranks wait in a collective only for the slowest shard and for rank 0's COCOeval,
never for a whole val pass; ``timing["wait_s"]`` is that wait on this rank.
"""
import contextlib
import copy
import io
import json
import os
import time

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from ..utils.postprocess import postprocess
from .voc_eval import voc_map

__all__ = ["COCO_STAT_NAMES", "COCOEvaluator", "VOCEvaluator", "evaluate", "run_inference", "coco_eval",
           "format_per_class_table", "format_timing"]

COCO_STAT_NAMES = (
    "AP50_95", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)
# the first val images whose detections a rank-0 result carries under "samples" (what the
# training log draws at each evaluation); the evaluator owns it, the log draws what it is given
SAMPLE_IMAGES = 4


def _model_num_classes(model):
    head = getattr(model, "head", None)
    return int(getattr(head, "num_classes", getattr(model, "num_classes", -1)))


def _as_loader(data, img_size, batch_size, num_workers, rank=0, world_size=1):
    """A ``mindyolox.data.Loader`` from a loader (returned as is) or a dataset (this rank's shard)."""
    from ..data import DetectionDataset, Loader, create_eval_loader
    if isinstance(data, Loader):
        return data
    if not isinstance(data, DetectionDataset):
        raise TypeError(f"evaluate() needs a mindyolox DetectionDataset or eval Loader, got {type(data).__name__}")
    if img_size is None:
        raise ValueError("evaluate(): img_size (h, w) is required when a dataset is given")
    size = [int(img_size[0]), int(img_size[1])]
    # mindspore.dataset refuses more parallel workers than CPU cores (recipes default to 4)
    workers = max(0, min(int(num_workers), os.cpu_count() or 1))
    return create_eval_loader({"test_size": size, "num_workers": workers}, int(batch_size), rank=rank,
                              world_size=world_size, dataset=data)


def run_inference(model, loader, conf=0.01, nms=0.65, class_agnostic=False, progress=True, desc="eval"):
    """Run ``model`` over an eval loader and postprocess.

    Returns ``(results, timing)``: ``results`` is a list of ``(dataset_index, dets [K, 7] in
    ORIGINAL image pixels (x1, y1, x2, y2, obj, cls_conf, cls))`` for every readable image;
    ``timing`` has ``forward_ms`` / ``nms_ms`` per image (batches after the first, which
    includes graph compilation; a single batch is timed on a second call), ``first_batch_s``, ``images``,
    ``total_s``, ``images_per_s`` (end to end, loading included, first batch excluded).
    """
    import mindspore as ms
    head = getattr(model, "head", None)
    if head is not None and not getattr(head, "decode_in_inference", True):
        raise ValueError("evaluation needs decoded outputs: the model's head has decode_in_inference=False "
                         "(an export model); build one with decode_in_inference=True")
    dataset = loader.dataset
    h_in, w_in = loader.source.test_size
    was_training = model.training
    model.set_train(False)
    results = []
    fwd_s = nms_s = 0.0
    timed_images = 0
    first_batch_s = 0.0
    first_images = 0
    t_start = time.perf_counter()
    t_after_first = None
    n_images = 0
    bar = tqdm(total=loader.steps_per_epoch, desc=desc, unit="batch", disable=not progress,
               dynamic_ncols=True, leave=False)
    try:
        for step, (images, index, _orig_hw, _ratio) in enumerate(loader):
            t0 = time.perf_counter()
            out = model(ms.Tensor(images)).asnumpy()
            t1 = time.perf_counter()
            valid = np.flatnonzero(index >= 0)
            dets = postprocess(out[valid], conf, nms, class_agnostic)
            t2 = time.perf_counter()
            for k, d in zip(valid, dets):
                i = int(index[k])
                h, w = dataset.orig_size(i)
                scale = min(h_in / float(h), w_in / float(w))
                d = d.copy()
                d[:, :4] /= np.float32(scale)
                results.append((i, d))
            n_images += len(valid)
            if step == 0:
                first_batch_s = time.perf_counter() - t_start
                first_images = len(valid)
                t_after_first = time.perf_counter()
                if loader.steps_per_epoch == 1:   # time a second, compiled call of the only batch
                    t0 = time.perf_counter()
                    out = model(ms.Tensor(images)).asnumpy()
                    t1 = time.perf_counter()
                    postprocess(out[valid], conf, nms, class_agnostic)
                    fwd_s, nms_s, timed_images = t1 - t0, time.perf_counter() - t1, len(valid)
            else:
                fwd_s += t1 - t0
                nms_s += t2 - t1
                timed_images += len(valid)
            bar.update(1)
    finally:
        bar.close()
        model.set_train(was_training)
    total = time.perf_counter() - t_start
    rest = time.perf_counter() - t_after_first if t_after_first else 0.0
    per = max(timed_images, 1)
    timing = {
        "forward_ms": 1000.0 * fwd_s / per, "nms_ms": 1000.0 * nms_s / per,
        "first_batch_s": first_batch_s, "images": n_images, "total_s": total,
        # one batch only: its compiled forward + NMS (no loading) stands for the throughput
        "images_per_s": ((n_images - first_images) / rest if loader.steps_per_epoch > 1 and rest > 0
                         else timed_images / max(fwd_s + nms_s, 1e-9)),
    }
    return results, timing


def format_timing(t):
    """One line: forward / NMS ms per image and end-to-end images/s."""
    return (f"forward {t['forward_ms']:.2f} ms/img, NMS {t['nms_ms']:.2f} ms/img, "
            f"inference {t['forward_ms'] + t['nms_ms']:.2f} ms/img, {t['images_per_s']:.2f} images/s "
            f"end to end ({t['images']} images, first batch incl. compilation {t['first_batch_s']:.1f} s)")


def format_per_class_table(names, values, title="AP", columns=6):
    """Official-style per-class table: ``columns`` cells per row (name, value pairs), percent."""
    pairs = [(str(n), "nan" if v is None or np.isnan(v) else f"{100.0 * v:.3f}") for n, v in zip(names, values)]
    per_row = max(1, columns // 2)
    wn = max([len("class")] + [len(p[0]) for p in pairs])
    wv = max([len(title)] + [len(p[1]) for p in pairs])
    head = " | ".join(f"{'class':<{wn}} | {title:>{wv}}" for _ in range(min(per_row, len(pairs))))
    lines = [f"| {head} |", "|" + "|".join("-" * (len(seg) + 2) for seg in head.split(" | ")) + "|"]
    for r in range(0, len(pairs), per_row):
        cells = [f"{n:<{wn}} | {v:>{wv}}" for n, v in pairs[r:r + per_row]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def coco_eval(coco, dets):
    """pycocotools ``COCOeval`` (bbox) of the COCO result list ``dets`` against the ``COCO``
    index ``coco``: ``(stats [12], per-class AP50:95 [N], per-class AP50 [N], per-class AR100
    [N], summary text)``, classes in category-id order, NaN for a class without ground truth;
    no detections: every stat 0."""
    n = len(coco.getCatIds())
    stats = [0.0] * 12
    per_class_ap = [float("nan")] * n
    per_class_ar = list(per_class_ap)
    per_class_ap50 = list(per_class_ap)
    summary = "no detections: every COCO stat is 0"
    if dets:
        from pycocotools.cocoeval import COCOeval
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            coco_dt = coco.loadRes(copy.deepcopy(dets))
            ev = COCOeval(coco, coco_dt, "bbox")
            ev.evaluate()
            ev.accumulate()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            ev.summarize()
        summary = buf.getvalue().rstrip()
        stats = [float(s) for s in ev.stats]
        prec = ev.eval["precision"]     # [T, R, K, area, maxDets]
        rec = ev.eval["recall"]         # [T, K, area, maxDets]
        for k in range(n):
            p = prec[:, :, k, 0, -1]
            p = p[p > -1]
            per_class_ap[k] = float(np.mean(p)) if p.size else float("nan")
            p50 = prec[0, :, k, 0, -1]   # IoU 0.5, every area, 100 detections
            p50 = p50[p50 > -1]
            per_class_ap50[k] = float(np.mean(p50)) if p50.size else float("nan")
            r = rec[:, k, 0, -1]
            r = r[r > -1]
            per_class_ar[k] = float(np.mean(r)) if r.size else float("nan")
    return stats, per_class_ap, per_class_ap50, per_class_ar, summary


class _Evaluator:
    """What COCO and VOC evaluation share: the (sharded) loader, inference, gathering the
    detections and sending rank 0's metrics to every rank. Subclasses give ``_check(model)``,
    ``_metrics(results, timing, det_file)`` (the full result dict, rank 0) and ``STATS`` (the
    number of entries of ``stats``).

    Args:
        data: the dataset or an eval ``Loader`` (``create_eval_loader``) over it.
        img_size: ``(h, w)`` input size (ignored when a Loader is given: its size is used).
        batch_size, num_workers: of the loader built for a dataset.
        conf, nms, class_agnostic: postprocess settings (official eval: 0.01 / 0.65 / False).
        rank, world_size: this process's shard of a distributed evaluation (module doc).
    """
    STATS = 0

    def __init__(self, data, img_size=None, batch_size=8, conf=0.01, nms=0.65,
                 class_agnostic=False, num_workers=0, rank=0, world_size=1):
        self.rank, self.world_size = int(rank), int(world_size)
        self.loader = _as_loader(data, img_size, batch_size, num_workers, self.rank, self.world_size)
        self.dataset = self.loader.dataset
        self.conf, self.nms, self.class_agnostic = float(conf), float(nms), bool(class_agnostic)

    def evaluate(self, model, progress=True, det_file=None):
        """Evaluate ``model``; returns the dict described in :func:`evaluate` (on ranks other
        than 0 of a distributed evaluation: ``AP50_95``, ``AP50``, ``stats``, ``per_class_AP``,
        ``num_detections``, ``num_images`` and ``timing``, received from rank 0)."""
        self._check(model)
        results, timing = run_inference(model, self.loader, self.conf, self.nms, self.class_agnostic,
                                        progress, desc=f"eval {self.dataset.name}")
        timing["wait_s"] = 0.0
        if self.world_size > 1:
            from ..runtime.distributed import all_gather_rows
            t0 = time.perf_counter()
            rows = all_gather_rows(_to_rows(results), self.world_size)
            timing["wait_s"] += time.perf_counter() - t0
            results = _from_rows(rows)
        res = self._metrics(results, timing, det_file) if self.rank == 0 else None
        if res is not None:  # the first images' detections, for a look (TensorBoard)
            res["samples"] = {i: np.zeros((0, 7), np.float32) for i in range(min(SAMPLE_IMAGES, len(self.dataset)))}
            res["samples"].update({i: d for i, d in results if i < SAMPLE_IMAGES})
        if self.world_size > 1:
            res = self._share(res, timing)
        return res

    def _share(self, res, timing):
        """Rank 0's metrics on every rank (module doc); ``timing`` is this rank's."""
        from ..runtime.distributed import broadcast_from_rank0
        names = list(self.dataset.class_names)
        vec = np.zeros(self.STATS + len(names) + 1)
        if self.rank == 0:
            vec[:] = list(res["stats"]) + [res["per_class_AP"][n] for n in names] + [res["num_detections"]]
        t0 = time.perf_counter()
        vec = broadcast_from_rank0(vec, self.world_size)
        timing["wait_s"] += time.perf_counter() - t0
        if self.rank == 0:
            return res
        stats = [float(v) for v in vec[:self.STATS]]
        return {"AP50_95": stats[0], "AP50": stats[1], "stats": stats,
                "per_class_AP": dict(zip(names, (float(v) for v in vec[self.STATS:-1]))),
                "num_detections": int(vec[-1]), "num_images": len(self.dataset), "timing": timing}


def _to_rows(results):
    """``[(index, dets [K, 7])]`` -> float32 ``[sum K, 8]`` rows ``(index, dets...)``."""
    rows = [np.concatenate([np.full((len(d), 1), i, np.float32), d.astype(np.float32)], 1) for i, d in results]
    return np.concatenate(rows) if rows else np.zeros((0, 8), np.float32)


def _from_rows(rows):
    """Inverse of :func:`_to_rows` for the gathered rows of every rank, images in index order
    (the order of a single-process run); images without detections are left out."""
    index = rows[:, 0].astype(np.int64)
    order = np.argsort(index, kind="stable")
    rows, index = rows[order], index[order]
    cuts = np.flatnonzero(np.diff(index)) + 1
    return [(int(part[0, 0]), part[:, 1:]) for part in np.split(rows, cuts) if len(part)]


class COCOEvaluator(_Evaluator):
    """COCO bbox evaluation of a model on a :class:`~mindyolox.data.COCODataset` (args: see
    :class:`_Evaluator`)."""
    STATS = 12

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        if getattr(self.dataset, "coco", None) is None:
            raise DataError(f"{self.dataset.name}: COCO evaluation needs a COCO dataset (use VOCEvaluator)")

    def to_coco_json(self, results):
        """Detections as COCO result dicts ``{"image_id", "category_id", "bbox": [x, y, w, h]
        original pixels, "score": obj * cls_conf, "segmentation": []}``."""
        ids = self.dataset.class_ids
        out = []
        for i, d in results:
            if not len(d):
                continue
            xywh = d[:, :4].copy()
            xywh[:, 2:] = d[:, 2:4] - d[:, 0:2]
            scores = d[:, 4] * d[:, 5]
            img_id = self.dataset.image_id(i)
            for k in range(len(d)):
                out.append({"image_id": img_id, "category_id": ids[int(d[k, 6])],
                            "bbox": xywh[k].tolist(), "score": scores[k].item(), "segmentation": []})
        return out

    def _check(self, model):
        n_model = _model_num_classes(model)
        if n_model >= 0 and n_model != len(self.dataset.class_ids):
            raise DataError(f"{self.dataset.name} has {len(self.dataset.class_ids)} categories but the model "
                            f"predicts {n_model} classes (set model.num_classes)")

    def _metrics(self, results, timing, det_file):
        dets = self.to_coco_json(results)
        if det_file:
            os.makedirs(os.path.dirname(os.path.abspath(det_file)), exist_ok=True)
            with open(det_file, "w") as f:
                json.dump(dets, f)
        stats, per_class_ap, per_class_ap50, per_class_ar, summary = coco_eval(self.dataset.coco, dets)
        names = list(self.dataset.class_names)
        skipped = self.dataset.events.bad_images()
        return {
            "AP50_95": stats[0], "AP50": stats[1], "stats": stats,
            "stat_names": list(COCO_STAT_NAMES),
            "per_class_AP": dict(zip(names, per_class_ap)),
            "per_class_AR": dict(zip(names, per_class_ar)),
            "per_class_AP50": dict(zip(names, per_class_ap50)),
            "detections": dets,
            "timing": timing, "num_images": len(self.dataset), "num_detections": len(dets),
            "skipped_images": [p for p, _ in skipped],
            "settings": {"conf": self.conf, "nms": self.nms, "class_agnostic": self.class_agnostic,
                         "img_size": list(self.loader.source.test_size),
                         "batch_size": self.loader.batch_size},
            "summary": summary,
            "per_class_table": format_per_class_table(names, per_class_ap, "AP"),
        }


class VOCEvaluator(_Evaluator):
    """Pascal VOC mAP of a model on a :class:`~mindyolox.data.VOCDataset`; same args as
    :class:`COCOEvaluator`. Reports AP at IoU 0.5:0.95 (area metric), AP50 (area) and AP50
    with the VOC2007 11-point metric."""
    STATS = 3
    IOU_THRS = tuple(np.round(np.linspace(0.5, 0.95, 10), 2))

    def _check(self, model):
        n_model = _model_num_classes(model)
        if n_model >= 0 and n_model != self.dataset.num_classes:
            raise DataError(f"{self.dataset.name} has {self.dataset.num_classes} classes but the model "
                            f"predicts {n_model} (set model.num_classes)")

    def _metrics(self, results, timing, det_file):
        ds = self.dataset
        dets = [(ds.image_id(i), int(r[6]), float(r[4] * r[5]), r[:4].astype(np.float64))
                for i, d in results for r in d]
        difficult = getattr(ds, "difficult", None)   # COCO / YOLO data: no difficult flags
        gt = {ds.image_id(i): (ds.boxes[i], ds.classes[i],
                               difficult[i] if difficult is not None else np.zeros(len(ds.boxes[i]), bool))
              for i in range(len(ds))}
        area = voc_map(dets, gt, ds.num_classes, self.IOU_THRS, use_07_metric=False)
        v07 = voc_map(dets, gt, ds.num_classes, (0.5,), use_07_metric=True)
        ap50_95 = float(np.mean(list(area["per_iou"].values())))
        ap50 = area["per_iou"][0.5]
        if det_file:
            os.makedirs(os.path.dirname(os.path.abspath(det_file)), exist_ok=True)
            with open(det_file, "w") as f:
                json.dump([{"image_id": k, "class": ds.class_names[c], "class_id": c, "score": s,
                            "bbox_xyxy": b.tolist()} for k, c, s, b in dets], f)
        names = list(ds.class_names)
        per_class = area["per_class"][0]
        summary = "\n".join([
            f"VOC mAP (area, VOC2010+) @[IoU=0.50:0.95] = {ap50_95:.4f}",
            f"VOC mAP (area, VOC2010+) @[IoU=0.50]      = {ap50:.4f}",
            f"VOC mAP (11-point, VOC07) @[IoU=0.50]     = {v07['per_iou'][0.5]:.4f}",
        ])
        return {
            "AP50_95": ap50_95, "AP50": ap50, "AP50_voc07": v07["per_iou"][0.5],
            "stats": [ap50_95, ap50, v07["per_iou"][0.5]],
            "stat_names": ["AP50_95", "AP50", "AP50_voc07"],
            "per_iou_AP": {str(k): v for k, v in area["per_iou"].items()},
            "per_class_AP": dict(zip(names, per_class)),
            "timing": timing, "num_images": len(ds), "num_detections": len(dets),
            "skipped_images": [p for p, _ in ds.events.bad_images()],
            "settings": {"conf": self.conf, "nms": self.nms, "class_agnostic": self.class_agnostic,
                         "img_size": list(self.loader.source.test_size),
                         "batch_size": self.loader.batch_size},
            "summary": summary,
            "per_class_table": format_per_class_table(names, per_class, "AP50"),
        }


def evaluate(model, data, img_size=None, batch_size=8, conf=0.01, nms=0.65, class_agnostic=False,
             num_workers=0, progress=True, det_file=None, rank=0, world_size=1, metric=None):
    """Evaluate ``model`` (a YOLOX Cell; eval mode is set for the run and restored after) on
    ``data`` (a COCO/VOC dataset or an eval Loader from ``create_eval_loader``).

    Returns a dict: ``AP50_95``, ``AP50`` (fractions), ``stats`` (COCO: the 12 ``COCOeval``
    stats; VOC: ``[AP50_95, AP50, AP50_voc07]``), ``stat_names``, ``per_class_AP`` (name ->
    fraction, NaN for a class without ground truth; COCO also ``per_class_AP50``,
    ``per_class_AR`` and ``detections``, the COCO result list), ``timing`` (see :func:`run_inference`),
    ``num_images``, ``num_detections``, ``skipped_images`` (unreadable files), ``settings``,
    ``summary`` (printable text) and ``per_class_table`` (printable, percent).

    For repeated calls (trainer), build a :class:`COCOEvaluator` / :class:`VOCEvaluator` once
    and call its ``evaluate(model)``: the loader is reused and the model compiles once.
    ``rank`` / ``world_size``: a distributed evaluation (module doc); every rank calls this.
    ``metric``: ``"coco"`` or ``"voc"``; None: COCO for a dataset with a COCO index (COCO, YOLO),
    VOC otherwise. VOC mAP of a dataset without difficult flags counts every box.
    """
    from ..data import Loader
    ds = data.dataset if isinstance(data, Loader) else data
    if metric not in (None, "coco", "voc"):
        raise ValueError(f"metric must be 'coco', 'voc' or None, got {metric!r}")
    if metric is None:
        metric = "coco" if getattr(ds, "coco", None) is not None else "voc"
    cls = COCOEvaluator if metric == "coco" else VOCEvaluator
    ev = cls(data, img_size, batch_size, conf, nms, class_agnostic, num_workers, rank, world_size)
    return ev.evaluate(model, progress=progress, det_file=det_file)
