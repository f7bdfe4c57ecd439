"""Shared test fixtures, and how the suite is shared out between pytest-xdist workers.

Reference data lives in ``../shared`` beside the project root (``MINDYOLOX_SHARED``
overrides it). Tests that need it fail, never skip, when it is missing.

Workers (``pytest.ini``: ``-n 2 --dist loadfile --no-loadscope-reorder``): most of a test's
time here is a graph compile, largely on one core, so two workers keep both cores of the CI
machine busy. Each test file is one unit of work on one worker, so its module fixtures (a
compiled model, a training run, an ``msrun`` launch) are built once; the units are handed out
longest first (``UNIT_SECONDS``; it only orders the queue). The README quickstart run, which
``test_quickstart`` and ``test_readme`` share, is made once per session for both workers
(``test_quickstart.quickstart``: a file lock in the session's temporary folder). (Per-file
``xdist_group`` marks with ``--dist loadgroup`` did not work: pytest-xdist 3.8 applies a group
by rewriting ``item._nodeid``, which pytest 9.2 no longer reads.) ``python -m pytest -n 0``
runs everything in one process, in order.
"""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

# A pytest-xdist worker runs as ``python -c ...``: MindSpore takes sys.argv[0] as the entry
# script of its compile cache when it is imported (``mindspore/graph/api.py:291-296``) and
# later opens it to hash its imports, which fails on "-c". Give the worker what a plain
# ``python -m pytest`` has there (pytest's own ``__main__.py``).
if sys.argv and sys.argv[0] == "-c":
    sys.argv[0] = str(Path(pytest.__file__).with_name("__main__.py"))

# Two xdist workers share two cores: each worker's kernels (and the commands it starts) get one
# thread, as they effectively had while the kernels read MindSpore's OMP_NUM_THREADS=1
# (docs/devices.md, "Threads"); a test that checks the thread count sets its own.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("MINDYOLOX_KERNEL_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MINDYOLOX_SHARED", ROOT.parent / "shared"))


def shared_path(*parts):
    """Path inside the shared reference folder; raises (test fails) when absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(
            f"reference data {p} not found: put ../shared beside the project or set MINDYOLOX_SHARED")
    return p


def load_npz(*parts):
    with np.load(shared_path(*parts)) as f:
        return {k: f[k] for k in f.files}


# seconds of each unit in a two-worker run of the whole suite on the CI machine; orders the work
# queue only (longest first), a unit missing here starts after these. 2026-12-03: from the
# suite's 25 slowest durations that day plus the files' fast tests, test_resume and
# test_checkpoint_integrity, test_device_loop and test_amp less what their changes of that day
# saved (measured alone, file by file).
# test_readme runs the session's quickstart (~85 s) when it comes first, so it is placed
# early and counts it; test_quickstart then finds the run done and is placed late (a worker
# starting it while the other one runs the quickstart would wait on the lock).
UNIT_SECONDS = {
    "test_amp": 310, "test_readme": 310, "test_package": 280, "test_folded_bn": 180, "test_distributed": 210,
    "test_distributed_agreement": 200, "test_device_loop": 140, "test_check_device": 190, "test_deploy": 180,
    "test_train_options": 60, "test_train": 170, "test_distributed_eval": 160, "test_resume": 150,
    "test_loss": 130, "test_faults_run": 115, "test_checkpoint_integrity": 100, "test_simota_fp16": 70,
    "test_evaluate": 50, "test_model_parity": 50, "test_predict": 40, "test_model_info": 30, "test_data_cache": 20,
    "test_simota": 20, "test_quickstart": 20,
    # 2026-12-04, measured file by file on a loaded machine (issue 35's files)
    "test_distributed_stop": 240, "test_fp16_health": 110, "test_dynamic_shape": 50, "test_ascend_backend": 50,
    "test_yolo_data": 85,   # issue 36: measured alone 2026-12-04 (the globox AP and YAML-vs-JSON loss runs)
    # issue 37: the patience + freeze run (68 s alone, loaded machine) moved from test_train_options to test_loggers
    "test_loggers": 80,
}


def _unit(item):
    return Path(str(item.fspath)).stem


def pytest_collection_modifyitems(config, items):
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (-UNIT_SECONDS.get(_unit(item), 0), _unit(item), order[id(item)]))


@pytest.fixture(scope="session", autouse=True)
def _mindspore_cpu():
    import mindspore as ms
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    yield


@pytest.fixture(scope="session", autouse=True)
def _session_compile_cache(tmp_path_factory):
    """``train.py``'s default ``--compile-cache auto`` writes under ``$MINDYOLOX_COMPILE_CACHE``:
    a folder of this session (inherited by the CLI subprocesses), so no test reads graphs
    cached by another version of the code (mindyolox/runtime/compile_cache.py)."""
    saved = os.environ.get("MINDYOLOX_COMPILE_CACHE")
    os.environ["MINDYOLOX_COMPILE_CACHE"] = str(tmp_path_factory.mktemp("compile_cache_auto"))
    yield
    if saved is None:
        os.environ.pop("MINDYOLOX_COMPILE_CACHE", None)
    else:
        os.environ["MINDYOLOX_COMPILE_CACHE"] = saved


@pytest.fixture(scope="session", autouse=True)
def _kernel_library_folder():
    """The compiled CPU kernels (mindyolox/ops/cpu_kernels.py) are built into
    ``~/.cache/mindyolox/kernels``; CLI tests run with a scratch HOME, so name the real folder
    explicitly and let every subprocess reuse the one build."""
    os.environ.setdefault("MINDYOLOX_KERNEL_DIR", str(Path.home() / ".cache" / "mindyolox" / "kernels"))
    yield


@pytest.fixture(autouse=True)
def _restore_compile_cache_env():
    """MindSpore's compile-cache switches are process-global environment variables; a test
    that enables them must not make later tests' graphs go through the cache (graphs with
    Python-executed nodes cannot be cached and then fail to compile)."""
    keys = ("MS_COMPILER_CACHE_ENABLE", "MS_COMPILER_CACHE_PATH")
    saved = {k: os.environ.get(k) for k in keys}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
