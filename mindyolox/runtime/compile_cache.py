"""Where a training run keeps MindSpore's on-disk graph cache (``MS_COMPILER_CACHE_PATH``).

Two facts of MindSpore 2.10 decide the design (checked on CPU with a two-graph script,
2026-12-02; the speed-up is in docs/benchmarks.md, ``bench/bench_fusion.py cache``):

* graphs are cached **by position**: the n-th graph a process compiles is saved as and loaded
  from ``rank_<r>/graph_cache/compile_cache_<n>.mindir``, and ``MS_COMPILER_CACHE_PATH`` is read
  once, at the process's first compile. A process that compiles the same graphs in another
  order (input sizes 6, 4 where the cache was filled with 4, 6) loads the other graph and
  fails in a kernel (``ArgMaxWithValue``: "memory size of 'x' must be 40, but got 32").
  A multiscale run meets its input sizes in an order that depends on the seed and on where
  it starts (a resume): ``auto`` leaves it off there, and a folder given explicitly is keyed
  by the start position too (the trainer puts it into ``run``; the seed is in the recipe),
  so only a run of the same recipe from the same step reads it.
  A fixed-size recipe compiles the same sequence every time (train step, EMA update,
  evaluation), from a fresh start or a resume.
* MindSpore validates a cached graph only by the hash of the Python files it finds from the
  entry script through module-level imports (below).

MindSpore validates a cached graph only by the hash of the Python files it finds from the
entry script through *module-level* imports, skipping installed packages
(``mindspore/graph/api.py:306-362``, ``__get_compile_cache_dep_files``): imports inside
functions -- most of this package's -- are not followed, and a pip-installed ``mindyolox``
is skipped entirely. A cache folder shared between two versions of this code, or two
recipes, could therefore hand a graph of the other one to the run (the backend itself warns
"be aware of correctness risks" when it loads one). So the folder is keyed here:

``<root>/<recipe name>-<key>``, ``key`` = the first 16 hex digits of the SHA-256 of

* every ``*.py`` file of the ``mindyolox`` package (path and bytes) -- the code version;
* the MindSpore version and the Python version;
* the resolved recipe (JSON, keys sorted) without the keys that never enter a graph and only
  place the run (:data:`NOT_IN_GRAPHS`);
* the device options (:class:`~mindyolox.options.DeviceOptions`, which choose kernels);
* with ``cpu_kernels`` on, the kernel library's key
  (:func:`~mindyolox.ops.cpu_kernels.library_key`: source, compiler flags -- ``native`` or
  ``portable`` -- compiler version and, for ``native``, this CPU's model and instruction-set
  flags). A cached graph calls the library by its file name, so without it a home folder
  shared by two CPU types (NFS, an image moved between hosts) handed one CPU's graph, and
  its ``-march=native`` library, to the other (illegal instruction).

``root`` is ``$MINDYOLOX_COMPILE_CACHE`` if set (``off`` there turns ``auto`` off), else
``~/.cache/mindyolox/compile``. The test suite points it at a folder of its own session
(``tests/conftest.py``), so tests never read a cache written by other code. Any change
of code, MindSpore, recipe value, device options or kernel library gives a new folder (compiled once, as
without a cache); stale folders are never read again and can be deleted at any time.
"""
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from ..data.multiscale import is_multiscale
from ..ops import cpu_kernels
from .context import scoped_environ

__all__ = ["compile_cache_in", "code_version", "recipe_key", "run_switches", "default_cache_dir", "resolve_compile_cache",
           "NOT_IN_GRAPHS", "CACHE_ENV", "cache_root", "cache_folders", "folder_size", "prune_cache"]

CACHE_ENV = ("MS_COMPILER_CACHE_ENABLE", "MS_COMPILER_CACHE_PATH")

PACKAGE = Path(__file__).resolve().parents[1]
# recipe keys that place a run or choose where it is logged and never reach a compiled graph
# (the run name is no recipe key): switching experiment trackers reuses the cached graphs
NOT_IN_GRAPHS = ("train.output_dir", "train.loggers", "train.mlflow_uri", "train.mlflow_experiment",
                 "train.wandb_project", "train.wandb_mode")


def code_version():
    """SHA-256 hex of the package's ``*.py`` and ``*.cc`` files (relative path and content,
    sorted; a compiled graph names the kernel library built from the ``.cc``), the MindSpore
    version and the Python version."""
    import mindspore
    h = hashlib.sha256()
    for path in sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.cc")]):
        h.update(path.relative_to(PACKAGE).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    h.update(f"mindspore {mindspore.__version__} python {sys.version_info[:3]}".encode())
    return h.hexdigest()


def _without(cfg, dotted_keys):
    data = json.loads(json.dumps(cfg, default=str))
    for key in dotted_keys:
        *parents, last = key.split(".")
        node = data
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return data


def recipe_key(cfg, options=None, run=None):
    """16 hex digits naming the graphs of ``cfg`` (a resolved recipe) with ``options``
    (:class:`~mindyolox.options.DeviceOptions` or None) and ``run`` (a dict of the run's
    switches that change which graphs compile, e.g. distributed, evaluation) under this code
    version."""
    h = hashlib.sha256(code_version().encode())
    h.update(json.dumps(_without(cfg, NOT_IN_GRAPHS), sort_keys=True, default=str).encode())
    if options is not None:
        h.update(json.dumps(options.to_dict(), sort_keys=True, default=str).encode())
        if options.cpu_kernels:   # a cached graph names the library file it calls (module doc)
            h.update(f"cpu_kernels {cpu_kernels.library_key()}".encode())
    h.update(json.dumps(run or {}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def run_switches(cfg, start=(0, 0), **switches):
    """The ``run`` part of the key: ``switches`` (what changes the graphs or the order they
    compile in beyond recipe and device options -- distributed, world size, data sink,
    evaluation, precompile) and, for a multiscale recipe only, the start position ``(epoch,
    iter)``: such a run meets its sizes in an order fixed by the seed (in the recipe) and where
    it starts, so a resume from another step gets a folder of its own. A fixed-size recipe
    compiles the same sequence from any start (``use_l1`` is a Parameter, no graph of its own),
    so its resumes share the folder."""
    run = dict(switches)
    if is_multiscale(cfg["data"]):
        run["start"] = [int(start[0]), int(start[1])]
    return run


def cache_root():
    """``$MINDYOLOX_COMPILE_CACHE`` or ``~/.cache/mindyolox/compile``: where ``auto`` keeps its
    folders (``off`` in the variable: the default place, for listing)."""
    env = os.environ.get("MINDYOLOX_COMPILE_CACHE")
    return Path(env if env and env != "off" else Path.home() / ".cache" / "mindyolox" / "compile").expanduser()


def folder_size(path):
    """``(bytes, files)`` under ``path`` (files only; vanished files ignored)."""
    total = count = 0
    for p in Path(path).rglob("*"):
        try:
            if p.is_file():
                total, count = total + p.stat().st_size, count + 1
        except OSError:
            continue
    return total, count


def cache_folders(root=None):
    """The keyed folders of ``root`` (default :func:`cache_root`), newest first by the last
    change inside them: ``[(path, bytes, files, mtime)]``."""
    root = Path(root) if root is not None else cache_root()
    out = []
    for d in (root.iterdir() if root.is_dir() else []):
        if d.is_dir():
            size, files = folder_size(d)
            mtime = max([d.stat().st_mtime] + [p.stat().st_mtime for p in d.rglob("*") if p.exists()])
            out.append((d, size, files, mtime))
    return sorted(out, key=lambda e: e[3], reverse=True)


def prune_cache(keep, root=None):
    """Delete all but the ``keep`` newest keyed folders of ``root`` (0: all of them). A folder
    only holds graphs a later run may load: one deleted is compiled again by the next run that
    needs it. Returns the deleted paths."""
    deleted = []
    for path, *_ in cache_folders(root)[max(keep, 0):]:
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(path)
    return deleted


def default_cache_dir(cfg, options=None, run=None, root=None, name=None):
    """``<root>/<name>-<recipe_key>`` (module doc); not created here. ``root`` None:
    :func:`cache_root`."""
    root = Path(root or os.environ.get("MINDYOLOX_COMPILE_CACHE") or Path.home() / ".cache" / "mindyolox" / "compile")
    name = name or (str(cfg.get("name", "") or "recipe") if hasattr(cfg, "get") else "recipe")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))[:48]
    return root.expanduser() / f"{safe}-{recipe_key(cfg, options, run)}"


def resolve_compile_cache(setting, cfg, options=None, run=None, name=None):
    """The cache folder of a training run and a one-line note (or None) for its log.

    ``setting``: None or ``off`` -- no cache; ``auto`` -- :func:`default_cache_dir` when the
    recipe trains at one input size (no multiscale), else none (module doc); also none when
    ``MS_COMPILER_CACHE_ENABLE`` / ``MS_COMPILER_CACHE_PATH`` are already set in the
    environment (the caller's own cache stays in charge) or ``MINDYOLOX_COMPILE_CACHE=off``; a folder -- the keyed subfolder
    ``<folder>/<name>-<key>`` in it (a multiscale run is cached there too, with a warning in
    the note). Returns ``(Path or None, note or None)``."""
    if setting is None or str(setting).lower() in ("off", "none", "false", "0", ""):
        return None, None
    fixed = not is_multiscale(cfg["data"])
    if str(setting).lower() == "auto":
        if any(os.environ.get(k) for k in CACHE_ENV) or os.environ.get("MINDYOLOX_COMPILE_CACHE") == "off":
            return None, None
        if not fixed:
            return None, ("compile cache off (auto): a multiscale run meets its input sizes in a "
                          "seed- and start-dependent order, and MindSpore caches graphs by compile order")
        path = default_cache_dir(cfg, options, run, name=name)
        return path, f"compile cache {path} (auto: keyed by code version, recipe and device options)"
    path = default_cache_dir(cfg, options, run, root=Path(setting), name=name)
    note = f"compile cache {path}"
    if not fixed:
        note += (" -- multiscale: MindSpore caches graphs by compile order, so the folder is keyed by the "
                 "seed and the start position too (a resume from another step compiles again)")
    return path, note


def compile_cache_in(path):
    """A context manager: MindSpore's graph cache at ``path`` for the ``with`` block
    (``MS_COMPILER_CACHE_ENABLE=1``, ``MS_COMPILER_CACHE_PATH``; MindSpore reads them at the
    process's first compile, module doc), the variables put back when it ends; ``path`` None:
    nothing changes."""
    return scoped_environ({} if path is None else {"MS_COMPILER_CACHE_ENABLE": "1", "MS_COMPILER_CACHE_PATH": str(path)})
