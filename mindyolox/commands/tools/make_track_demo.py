"""Write the synthetic tracking sequence (moving, occluding demo shapes with ground-truth ids)
in the MOTChallenge layout: ``img1/*.jpg``, ``gt/gt.txt``, ``seqinfo.ini``.

    mindyolox-tools make-track-demo datasets/track-demo
    mindyolox-tools make-track-demo datasets/track-demo --frames 300 --objects 8 --seed 1

What is drawn: :mod:`mindyolox.data.demo_track` (the demo dataset's shapes, so the demo model
``configs/demo/`` detects them). ``DIR`` must be new or empty.
"""
import argparse

from .._args import run_cli

__all__ = ["main", "run"]


def main(argv=None):
    from ...data.demo_track import TrackSpec, write_sequence
    d = TrackSpec()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", help="output folder (new or empty)")
    p.add_argument("--frames", type=int, default=d.frames, help="frames (default %(default)s)")
    p.add_argument("--objects", type=int, default=d.objects, help="moving shapes (default %(default)s)")
    p.add_argument("--size", type=int, nargs=2, default=list(d.size), metavar=("W", "H"),
                   help="frame size in px (default %(default)s)")
    p.add_argument("--fps", type=int, default=d.fps, help="frame rate written to seqinfo.ini (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = p.parse_args(argv)
    out, frames, rows = write_sequence(args.dir, TrackSpec(args.frames, args.objects, args.size, fps=args.fps,
                                                           seed=args.seed))
    print(f"tracking sequence written to {out}: {frames} frames, {args.objects} objects, {rows} ground-truth boxes")
    return 0


def run():
    """Console entry point (``mindyolox-tools make-track-demo``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
