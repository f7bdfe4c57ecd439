"""Split a dataset (a :class:`~mindyolox.data.convert.DataSplit`) into train / val (/ test) by
ratio, stratified by class, deterministic for a seed.

The rule (an image's *labels* are the classes of its non-crowd boxes; ``r_s`` the ratio of
split ``s``; ``m_c`` the number of images holding class ``c``):

1. **Sizes**: split ``s`` gets ``floor(r_s * N)`` images, the images left over go one each to
   the splits with the largest fractional parts (ties: the earlier split), so every split is
   within one image of ``r_s * N`` and the sizes add up to ``N``.
2. **Order**: the seed draws one random permutation of the images (numpy
   ``default_rng(seed)``); every tie below is broken by it, so the same seed gives the same
   split on every machine.
3. **Coverage first**: a class is *due* in split ``s`` when ``r_s * m_c >= 1`` (its share of
   images is at least one). Classes are taken rarest first (fewest images; ties: smaller
   category id); for every split where the class is due and still absent, one of its
   unassigned images goes there: the one taking the fewest last images of other classes that
   other splits still lack (so placing one class does not strand another), then the one
   carrying the most classes still absent from that split and due there, then the
   permutation order. This is what puts a rare class in
   every split it can be in; it fails only when the split is full or every image of the
   class is already elsewhere (reported by :func:`missing_classes`).
4. **Iterative stratification** (Sechidis, Tsoumakas and Vlahavas 2011, per image): each
   split wants ``r_s * m_c - (images of c it has)`` more images of ``c``. Repeatedly take the
   class with the fewest unassigned images and give each of its unassigned images (in
   permutation order) to the split that wants that class most and is not full (ties: the
   split with more room, then the earlier split). A multi-label image counts for each of its
   classes.
5. Images without boxes fill the remaining room (permutation order, the split with the most
   room first).
"""
from collections import defaultdict

import numpy as np

from ..errors import DataError
from .convert import DataSplit

__all__ = ["split_sizes", "stratified_split", "partition", "missing_classes", "image_labels"]


def split_sizes(n, ratios):
    """Image counts of the splits (rule 1): ``split_sizes(128, [0.8, 0.2]) == [102, 26]``."""
    raw = [r * n for r in ratios]
    sizes = [int(np.floor(x + 1e-9)) for x in raw]
    order = sorted(range(len(ratios)), key=lambda s: (-(raw[s] - sizes[s]), s))
    for s in order[:n - sum(sizes)]:
        sizes[s] += 1
    return sizes


def check_ratios(ratios):
    """2 or 3 ratios, each >= 0, the first > 0, adding up to 1 (within 1e-6); else one DataError line."""
    ratios = [float(r) for r in ratios]
    if len(ratios) not in (2, 3) or min(ratios) < 0 or ratios[0] <= 0 or abs(sum(ratios) - 1) > 1e-6:
        raise DataError(f"--ratios: expected 2 or 3 non-negative numbers adding up to 1 (train val [test]), "
                        f"got {' '.join(f'{r:g}' for r in ratios)}")
    return ratios


def image_labels(coco):
    """Per image (in ``coco["images"]`` order) the sorted category ids of its non-crowd boxes."""
    pos = {im["id"]: i for i, im in enumerate(coco["images"])}
    labels = [set() for _ in coco["images"]]
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0) and a["image_id"] in pos:
            labels[pos[a["image_id"]]].add(a["category_id"])
    return [sorted(s) for s in labels]


def stratified_split(coco, ratios, seed=0):
    """The image positions (indices into ``coco["images"]``) of each split, by the module's
    rule. Returns a list of ``len(ratios)`` sorted index lists."""
    ratios = check_ratios(ratios)
    labels = image_labels(coco)
    n, k = len(labels), len(ratios)
    cap = split_sizes(n, ratios)
    rank = np.empty(n, np.int64)
    rank[np.random.default_rng(int(seed)).permutation(n)] = np.arange(n)
    images_of = defaultdict(list)
    for i, labs in enumerate(labels):
        for c in labs:
            images_of[c].append(i)
    for c in images_of:
        images_of[c].sort(key=lambda i: rank[i])
    m = {c: len(v) for c, v in images_of.items()}
    have = [defaultdict(int) for _ in range(k)]
    where = np.full(n, -1, np.int64)

    def assign(i, s):
        where[i] = s
        cap[s] -= 1
        for c in labels[i]:
            have[s][c] += 1

    by_rarity = sorted(images_of, key=lambda c: (m[c], c))
    for c in by_rarity:                                   # rule 3: coverage
        for s in range(k):
            if have[s][c] or ratios[s] * m[c] < 1 or cap[s] == 0:
                continue
            free = [i for i in images_of[c] if where[i] < 0]
            if not free:
                break
            lacking = {d for d in images_of if not have[s][d] and ratios[s] * m[d] >= 1}
            scarce = set()        # classes whose free images are all still needed by other splits lacking them
            for d in images_of:
                need = sum(1 for t in range(k) if t != s and not have[t][d] and ratios[t] * m[d] >= 1 and cap[t])
                if need and sum(1 for i in images_of[d] if where[i] < 0) <= need:
                    scarce.add(d)
            best = max(free, key=lambda i: (-sum(1 for d in labels[i] if d in scarce and d != c),
                                            sum(1 for d in labels[i] if d in lacking), -rank[i]))
            assign(best, s)
    left = {c: [i for i in v if where[i] < 0] for c, v in images_of.items()}
    while True:                                           # rule 4: iterative stratification
        left = {c: [i for i in v if where[i] < 0] for c, v in left.items()}
        left = {c: v for c, v in left.items() if v}
        if not left:
            break
        c = min(left, key=lambda c: (len(left[c]), c))
        for i in left[c]:
            if where[i] >= 0:
                continue
            open_ = [s for s in range(k) if cap[s] > 0]
            s = max(open_, key=lambda s: (ratios[s] * m[c] - have[s][c], cap[s], -s))
            assign(i, s)
    for i in sorted((i for i in range(n) if where[i] < 0), key=lambda i: rank[i]):   # rule 5
        assign(i, max(range(k), key=lambda s: (cap[s], -s)))
    return [sorted(np.flatnonzero(where == s).tolist()) for s in range(k)]


def missing_classes(coco, parts, ratios):
    """``[(split index, category id, images of the class)]`` where a class is due (module
    rule 3) but absent from that split."""
    labels = image_labels(coco)
    m = defaultdict(int)
    for labs in labels:
        for c in labs:
            m[c] += 1
    out = []
    for s, idx in enumerate(parts):
        present = {c for i in idx for c in labels[i]}
        out += [(s, c, m[c]) for c in sorted(m) if ratios[s] * m[c] >= 1 and c not in present]
    return out


def partition(split, ratios, seed=0, names=("train", "val", "test")):
    """``split`` (a :class:`DataSplit`) cut into ``len(ratios)`` DataSplits named ``names``
    (a zero ratio gives no split); image and annotation records kept as they are. Returns
    ``(splits, parts)`` with ``parts`` the image positions of each split."""
    coco = split.coco
    parts = stratified_split(coco, ratios, seed)
    per = defaultdict(list)
    for a in coco["annotations"]:
        per[a["image_id"]].append(a)
    out = []
    for name, idx, r in zip(names, parts, ratios):
        if r == 0:
            continue
        images = [coco["images"][i] for i in idx]
        anns = [a for im in images for a in per.get(im["id"], ())]
        out.append(DataSplit(name, {"images": images, "annotations": anns, "categories": coco["categories"]},
                             split.image_root, list(split.sources)))
    return out, parts
