"""Charts for the documentation drawn from the pages' own tables (used by tools/make_doc_images.py).

``benchmark_chart`` reads the table under "## Side by side with the official code" of
docs/benchmarks.md -- the column of the case, the ratio columns ("before: ratio (spread)",
"now: ratio (spread)") and the goal -- and draws one bar per case and sitting: ours / official
time (1.0 = the official code's speed, lower is faster), the spread over rounds as a whisker,
the goal as a red tick. Drawn with OpenCV like the project's other plots (no matplotlib).
"""
import re
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
HEADING = "## Side by side with the official code"
INK, GRID, GOAL = (40, 40, 40), (225, 225, 225), (40, 40, 210)
COLORS = {"before": (175, 175, 175), "now": (190, 120, 30)}   # BGR: grey, blue


def _numbers(text):
    return [float(x) for x in re.findall(r"\d+\.\d+|\d+", text)]


def read_ratios(page=PAGE):
    """``(date, rows)`` of the side-by-side table: rows of ``{"case", "before", "now", "goal"}``,
    ``before`` / ``now`` as ``(ratio, ratio_high, spread_low, spread_high)`` (a ratio given as a
    range "1.44-1.61" has ``ratio_high`` 1.61, else equal to ``ratio``). One-line errors name the page."""
    text = Path(page).read_text()
    if HEADING not in text:
        raise SystemExit(f"error: {page}: no heading '{HEADING}'")
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    found = re.search(r"\d{4}-\d{2}-\d{2}", section)   # the sitting's date opens the section
    date = found.group() if found else ""
    table = [ln for ln in section.splitlines() if ln.startswith("|")]
    if len(table) < 3:
        raise SystemExit(f"error: {page}: no table under '{HEADING}'")
    head = [c.strip().strip("*").lower() for c in table[0].strip("|").split("|")]
    try:
        cols = {k: next(i for i, h in enumerate(head) if h.startswith(k)) for k in ("case", "before", "now", "goal")}
    except StopIteration:
        raise SystemExit(f"error: {page}: the table under '{HEADING}' needs the columns case, before, now, goal") from None
    rows = []
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        row = {"case": cells[cols["case"]]}
        for k in ("before", "now"):
            main, _, spread = cells[cols[k]].replace("*", "").partition("(")
            m, sp = _numbers(main), _numbers(spread)
            if not m:
                raise SystemExit(f"error: {page}: no ratio in '{cells[cols[k]]}' ({row['case']})")
            row[k] = (m[0], m[-1], *(sp[:2] if len(sp) >= 2 else (m[0], m[-1])))
        goal = _numbers(cells[cols["goal"]].split(":")[0])
        row["goal"] = goal[0] if goal else None
        rows.append(row)
    return date, rows


def _text(img, text, org, scale=0.5, color=INK, thick=1):
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def draw_ratios(date, rows, width=900):
    """The chart as a BGR image: a row of two bars (before, now) per case on a ratio axis 0..x_max."""
    row_h, top, left, right = 54, 70, 210, 40
    h = top + row_h * len(rows) + 60
    img = np.full((h, width, 3), 255, np.uint8)
    x_max = max(2.0, np.ceil(max(max(r["before"][3], r["now"][3]) for r in rows) * 2) / 2)
    span = width - left - right
    def px(v):
        return int(left + span * v / x_max)
    _text(img, f"Time per call, ours / official YOLOX 0.3.0 (PyTorch), same CPU{', ' + date if date else ''}",
          (16, 26), 0.58, INK, 1)
    _text(img, "lower is faster; 1.0 = the official speed; whisker: spread over rounds; red: the goal",
          (16, 50), 0.45, (90, 90, 90))
    for t in np.arange(0, x_max + 1e-9, 0.5):
        cv2.line(img, (px(t), top - 6), (px(t), top + row_h * len(rows)), GRID if t != 1.0 else INK, 1)
        _text(img, f"{t:.1f}", (px(t) - 12, top + row_h * len(rows) + 20), 0.45)
    for i, r in enumerate(rows):
        y0 = top + i * row_h
        _text(img, r["case"], (16, y0 + 30), 0.48)
        for j, k in enumerate(("before", "now")):
            ratio, hi, slo, shi = r[k]
            yb = y0 + 8 + j * 20
            cv2.rectangle(img, (left, yb), (px(ratio), yb + 15), COLORS[k], -1)
            if hi != ratio:   # a ratio given as a range
                cv2.rectangle(img, (px(ratio), yb), (px(hi), yb + 15), COLORS[k], 1)
            cv2.line(img, (px(slo), yb + 7), (px(shi), yb + 7), INK, 1)
            label = f"{ratio:.2f}" if hi == ratio else f"{ratio:.2f}-{hi:.2f}"
            at = max(hi, shi)
            if r["goal"] and at < r["goal"] < at + 0.45:   # the label starts after the goal line, not under it
                at = r["goal"]
            _text(img, f"{k} {label}", (px(at) + 6, yb + 13), 0.42)
        if r["goal"]:
            cv2.line(img, (px(r["goal"]), y0 + 4), (px(r["goal"]), y0 + 48), GOAL, 2)
    _text(img, "ours / official", (left + span // 2 - 50, h - 14), 0.48)
    return img


def benchmark_chart(dst, small_png):
    """Write ``dst`` (PNG) from docs/benchmarks.md; returns 0 (make_doc_images' part convention)."""
    date, rows = read_ratios()
    tmp = Path(dst).with_suffix(".full.png")
    cv2.imwrite(str(tmp), draw_ratios(date, rows))
    try:
        print(f"{dst}: {small_png(tmp, Path(dst), 900) // 1024} KB ({len(rows)} cases of {PAGE.name}, {date})")
    finally:
        tmp.unlink()
    return 0
