"""The kernel library as an ops package (issue 34, part 4): options decide without running the
compiler, the build waits for the first model, the library's key is part of the compile-cache
key, old builds are pruned (never one a live process holds), the portable flag set, and
``mindyolox-tools build-kernels``. A fake compiler (a shell script) stands in for g++ where
the test is about the files, so nothing here compiles C++ or a graph."""
import fcntl
import os
import stat
import time

import pytest

from mindyolox import load_config
from mindyolox.errors import ConfigError
from mindyolox.ops import cpu_kernels
from mindyolox.options import DeviceOptions, resolve_options
from mindyolox.runtime.compile_cache import recipe_key

from .conftest import ROOT


def _nano(*overrides):
    return load_config(ROOT / "configs" / "yolox-nano.yaml", list(overrides))


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A scratch kernel folder, no kernel state of this process, native flags."""
    folder = tmp_path / "kernels"
    monkeypatch.setenv("MINDYOLOX_KERNEL_DIR", str(folder))
    monkeypatch.delenv("MINDYOLOX_KERNEL_FLAGS", raising=False)
    monkeypatch.setattr(cpu_kernels, "_state", {})
    yield folder
    if "lock" in cpu_kernels._state:   # the library's lock of this test's "process"
        os.close(cpu_kernels._state["lock"])


def _fake_compiler(tmp_path, fail=False):
    """A ``$CXX`` that answers ``--version`` and writes a small file to ``-o`` (or fails like g++)."""
    script = tmp_path / "fake-g++"
    body = ('echo "error: cpu_kernels.cc:1: unsupported target" >&2; exit 1' if fail else
            'while [ "$1" != "-o" ]; do shift; done; printf "lib" > "$2"')
    script.write_text(f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "fake-g++ 1.0"; exit 0; fi\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_resolving_options_runs_no_compiler(fresh, monkeypatch):
    """Options decide on/off cheaply; before, resolving ``auto`` compiled the library."""
    def no_program(*args, **kwargs):
        raise AssertionError(f"resolve_options ran a program: {args[0] if args else kwargs}")
    monkeypatch.setattr(cpu_kernels.subprocess, "run", no_program)
    assert resolve_options(_nano()).cpu_kernels is True
    assert resolve_options(_nano("runtime.cpu_kernels=true")).cpu_kernels is True
    assert not fresh.exists()                              # nothing built
    monkeypatch.setenv("MINDYOLOX_KERNEL_FLAGS", "fast")
    with pytest.raises(ConfigError, match="MINDYOLOX_KERNEL_FLAGS='fast'"):
        resolve_options(_nano())


def test_a_failing_build_is_one_clear_error_when_a_model_asks(fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", _fake_compiler(tmp_path, fail=True))
    options = resolve_options(_nano())
    assert options.cpu_kernels is True                     # a compiler is there: decided on
    with pytest.raises(ConfigError, match="unsupported target.*runtime.cpu_kernels=false"):
        cpu_kernels.library()
    with pytest.raises(ConfigError, match="unsupported target"):
        cpu_kernels.silu()                                 # what a layer asks for
    assert [p.name for p in fresh.iterdir()] == []         # no temporary file left


def test_the_kernel_library_is_part_of_the_compile_cache_key(fresh, monkeypatch):
    cfg = _nano()
    on, off = DeviceOptions("CPU", "im2col", "float64", True, "O0", cpu_kernels=True), \
        DeviceOptions("CPU", "im2col", "float64", True, "O0", cpu_kernels=False)
    here_on, here_off = recipe_key(cfg, on), recipe_key(cfg, off)
    assert recipe_key(cfg, on) == here_on                  # stable
    monkeypatch.setattr(cpu_kernels, "_state", {})
    monkeypatch.setattr(cpu_kernels, "_cpu_signature", lambda: "x86_64|model name=another CPU|flags=sse2")
    assert recipe_key(cfg, on) != here_on                  # another CPU type: another folder
    assert recipe_key(cfg, off) == here_off                # no kernels: the CPU does not matter
    other_cpu = recipe_key(cfg, on)
    monkeypatch.setattr(cpu_kernels, "_state", {})
    monkeypatch.setenv("MINDYOLOX_KERNEL_FLAGS", "portable")
    portable = recipe_key(cfg, on)
    assert portable not in (here_on, other_cpu)
    monkeypatch.setattr(cpu_kernels, "_state", {})
    monkeypatch.setattr(cpu_kernels, "_cpu_signature", lambda: "x86_64|model name=a third CPU|flags=avx512f")
    assert recipe_key(cfg, on) == portable                 # portable: the same library on every CPU


def test_portable_flags_have_no_march():
    assert "-march=native" in cpu_kernels.CXXFLAGS
    assert not any(f.startswith("-march") for f in cpu_kernels.PORTABLE_CXXFLAGS)
    assert set(cpu_kernels.CXXFLAGS) - set(cpu_kernels.PORTABLE_CXXFLAGS) == {"-march=native"}


def _lib(folder, name, age_s):
    path = folder / name
    path.write_bytes(b"lib")
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def test_old_builds_are_pruned_but_never_one_in_use(tmp_path):
    folder = tmp_path
    current = _lib(folder, "cpu_kernels-cur.so", 500)                  # older than some, kept anyway
    others = [_lib(folder, f"cpu_kernels-old{i}.so", 100 * i) for i in range(1, 7)]  # old1 newest
    killed = _lib(folder, "cpu_kernels-x.so.abc.tmp", 2 * 3600)       # a killed build's leftover
    running = _lib(folder, "cpu_kernels-y.so.def.tmp", 10)            # a build under way
    in_use = os.open(others[-1], os.O_RDONLY)                          # the oldest, held by a "process"
    fcntl.flock(in_use, fcntl.LOCK_SH)
    try:
        deleted = cpu_kernels.prune(folder, keep_path=current)
    finally:
        os.close(in_use)
    assert sorted(p.name for p in deleted) == ["cpu_kernels-old4.so", "cpu_kernels-old5.so", killed.name]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [current.name, *(p.name for p in others[:3]), others[-1].name, running.name])
    assert [p.name for p in cpu_kernels.prune(folder, keep_path=current)] == ["cpu_kernels-old6.so"]  # released


def test_the_library_a_process_loaded_survives_pruning(fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", _fake_compiler(tmp_path))
    path = cpu_kernels.library()
    assert path.parent == fresh and path.read_bytes() == b"lib"
    assert cpu_kernels.prune(fresh, keep=0) == [] and path.exists()   # held by this process
    os.close(cpu_kernels._state["lock"])
    monkeypatch.setattr(cpu_kernels, "_state", {})
    _lib(fresh, "cpu_kernels-older.so", 3600)
    os.unlink(path)                                        # deleted by hand: rebuilt on next use
    assert cpu_kernels.library() == path and path.exists()


def test_a_new_build_prunes_the_folder(fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", _fake_compiler(tmp_path))
    fresh.mkdir()
    old = [_lib(fresh, f"cpu_kernels-old{i}.so", 100 * i) for i in range(1, 6)]
    path, built = cpu_kernels.build()
    assert built and path.exists()
    assert sorted(p.name for p in fresh.iterdir()) == sorted([path.name, *(p.name for p in old[:cpu_kernels.KEEP - 1])])
    assert cpu_kernels.build() == (path, False)


def test_build_kernels_verb(fresh, tmp_path, monkeypatch, capsys):
    from mindyolox.commands.tools import TOOLS
    from mindyolox.commands.tools.build_kernels import main
    assert "build-kernels" in TOOLS
    monkeypatch.setenv("CXX", _fake_compiler(tmp_path))
    main(["--portable"])
    out = capsys.readouterr().out
    portable = fresh / f"cpu_kernels-{cpu_kernels.library_key(portable=True)}.so"
    assert out.strip() == f"built: {portable} (portable)" and portable.exists()
    main([])
    native = fresh / f"cpu_kernels-{cpu_kernels.library_key(portable=False)}.so"
    assert capsys.readouterr().out.strip() == f"built: {native} (native)" and native != portable
    main([])
    assert capsys.readouterr().out.strip() == f"up to date: {native} (native)"
    monkeypatch.setenv("MINDYOLOX_KERNEL_FLAGS", "portable")
    monkeypatch.setattr(cpu_kernels, "_state", {})
    assert cpu_kernels.library() == portable               # a run with the portable flag set loads it
