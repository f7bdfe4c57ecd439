"""Score a tracking result: MOTA, IDF1, HOTA (+ MOTP, ID switches, FP, FN) of a MOTChallenge
text file against the ground truth.

    mindyolox-tools track-eval --gt datasets/track-demo/gt/gt.txt --pred runs/track/track-demo.txt
    mindyolox-tools track-eval --gt gt.txt --pred pred.txt --json scores.json

What is computed and by what (py-motmetrics for MOTA / IDF1 / MOTP, HOTA from its paper):
:mod:`mindyolox.track.metrics`. Needs the ``track`` extra (``pip install 'mindyolox[track]'``).
"""
import argparse

from .._args import run_cli

__all__ = ["main", "run"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gt", required=True, help="ground truth, MOTChallenge text (e.g. <seq>/gt/gt.txt)")
    p.add_argument("--pred", required=True, help="tracks, MOTChallenge text (track.py's <stem>.txt)")
    p.add_argument("--json", help="also write the scores to this JSON file")
    args = p.parse_args(argv)
    from ...runtime.outputs import check_outputs, save_json
    from ...track.metrics import evaluate_mot
    if args.json:
        check_outputs([(args.json, "the scores", "--json")], [args.gt, args.pred])
    s = evaluate_mot(args.gt, args.pred)
    print(f"{s['frames']} frames, {s['gt_boxes']} ground-truth boxes, {s['pred_boxes']} predicted boxes")
    print(f"MOTA {100 * s['mota']:.2f}  IDF1 {100 * s['idf1']:.2f}  HOTA {100 * s['hota']:.2f}  "
          f"(DetA {100 * s['deta']:.2f}, AssA {100 * s['assa']:.2f})")
    print(f"MOTP {s['motp']:.3f} (mean 1 - IoU of matches)  IDsw {s['id_switches']}  FP {s['false_positives']}  "
          f"FN {s['misses']}")
    if args.json:
        save_json(args.json, s)
        print(f"scores written to {args.json}")
    return 0


def run():
    """Console entry point (``mindyolox-tools track-eval``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
