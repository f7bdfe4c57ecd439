"""Show and prune the caches a run fills: MindSpore's compiled graphs and the CPU kernel libraries.

    mindyolox-tools cache               # each folder: entries, size, last used
    mindyolox-tools cache --prune 2     # keep the 2 newest of each, delete the rest
    mindyolox-tools cache --prune 0     # clear both (a library a running process uses is kept)

The compile cache (``train.py --compile-cache auto``, :mod:`mindyolox.runtime.compile_cache`)
is ``$MINDYOLOX_COMPILE_CACHE`` or ``~/.cache/mindyolox/compile``: one folder per code
version, recipe and device options, never cleaned by a run. The kernel libraries
(:mod:`mindyolox.ops.cpu_kernels`) are ``$MINDYOLOX_KERNEL_DIR`` or
``~/.cache/mindyolox/kernels``; a build keeps 4 there. Deleting either only costs the next run
its compile (graphs: ~30 s for the quickstart; a library: 1-5 s). A library that a live process
has loaded holds a lock and is never deleted (``in use`` below).
"""
import argparse
import time

from ...ops import cpu_kernels
from ...runtime import compile_cache
from .._args import parse_args, run_cli


def _mb(n):
    return f"{n / 1e6:.1f} MB"


def _age(mtime):
    s = max(0.0, time.time() - mtime)
    return f"{s / 86400:.1f} d ago" if s >= 86400 else (f"{s / 3600:.1f} h ago" if s >= 3600 else f"{s / 60:.0f} min ago")


def _libraries(folder):
    """``[(path, bytes, mtime, in_use)]`` of the kernel folder, newest first."""
    libs = [(p, p.stat().st_size, p.stat().st_mtime, cpu_kernels.in_use(p))
            for p in folder.glob("cpu_kernels-*.so")] if folder.is_dir() else []
    return sorted(libs, key=lambda e: e[2], reverse=True)


def show():
    """Print both caches (module doc)."""
    root = compile_cache.cache_root()
    folders = compile_cache.cache_folders(root)
    print(f"compile cache {root}: {len(folders)} folder(s), {_mb(sum(f[1] for f in folders))}")
    for path, size, files, mtime in folders:
        print(f"  {path.name}  {_mb(size)}  {files} files  last used {_age(mtime)}")
    kdir = cpu_kernels.kernel_dir()
    libs = _libraries(kdir)
    print(f"kernel libraries {kdir}: {len(libs)} file(s), {_mb(sum(e[1] for e in libs))}")
    for path, size, mtime, used in libs:
        print(f"  {path.name}  {_mb(size)}  built {_age(mtime)}{'  in use' if used else ''}")


def prune(keep):
    """Keep the ``keep`` newest compile-cache folders and kernel libraries (module doc)."""
    gone = compile_cache.prune_cache(keep)
    print(f"compile cache: deleted {len(gone)} folder(s)" + "".join(f"\n  {p.name}" for p in gone))
    kdir = cpu_kernels.kernel_dir()
    before = {p for p, *_ in _libraries(kdir)}
    # prune() keeps keep_path plus keep - 1 others and skips libraries a process holds a lock on
    newest = next(iter(_libraries(kdir)), None)
    deleted = cpu_kernels.prune(kdir, keep_path=newest[0] if newest and keep > 0 else None, keep=keep) if before else []
    kept_in_use = [p.name for p, _, _, used in _libraries(kdir) if used]
    print(f"kernel libraries: deleted {len(deleted)} file(s)" + "".join(f"\n  {p.name}" for p in deleted)
          + (f"; kept in use: {', '.join(kept_in_use)}" if kept_in_use else ""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prune", type=int, metavar="N",
                        help="keep the N newest compile-cache folders and kernel libraries, delete the rest (0: clear)")
    args = parse_args(parser, argv)
    if args.prune is not None and args.prune < 0:
        parser.error("--prune: N must be 0 or more")
    if args.prune is not None:
        prune(args.prune)
    show()


def run():
    """Console entry point (``mindyolox-tools cache``, ``python -m mindyolox.commands.tools cache``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
