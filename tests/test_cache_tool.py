"""``mindyolox-tools cache``: lists the compile-cache folders and kernel libraries with sizes,
prunes to the N newest, and never deletes a library a process holds a lock on (a loaded one).
No compile: the folders and libraries are stand-in files."""
import fcntl
import os
import time

from mindyolox.commands.tools import TOOLS
from mindyolox.commands.tools.cache import main


def _fill(tmp_path, monkeypatch):
    graphs, kernels = tmp_path / "compile", tmp_path / "kernels"
    monkeypatch.setenv("MINDYOLOX_COMPILE_CACHE", str(graphs))
    monkeypatch.setenv("MINDYOLOX_KERNEL_DIR", str(kernels))
    now = time.time()
    for i, name in enumerate(["yolox-nano-demo-aaaa", "yolox-s-bbbb", "yolox-nano-cccc"]):   # newest first
        d = graphs / name / "rank_0" / "graph_cache"
        d.mkdir(parents=True)
        (d / "compile_cache_0.mindir").write_bytes(b"x" * 1000 * (i + 1))
        for p in (d / "compile_cache_0.mindir", d, d.parent, d.parent.parent):
            os.utime(p, (now - 3600 * i, now - 3600 * i))
    kernels.mkdir()
    for i, key in enumerate(["1111", "2222", "3333"]):
        lib = kernels / f"cpu_kernels-{key}.so"
        lib.write_bytes(b"k" * 500)
        os.utime(lib, (now - 60 * i, now - 60 * i))
    return graphs, kernels


def test_cache_lists_and_prunes(tmp_path, monkeypatch, capsys):
    graphs, kernels = _fill(tmp_path, monkeypatch)
    assert "cache" in TOOLS
    main([])
    out = capsys.readouterr().out
    assert f"compile cache {graphs}: 3 folder(s), 0.0 MB" in out
    assert out.index("yolox-nano-demo-aaaa") < out.index("yolox-s-bbbb") < out.index("yolox-nano-cccc")  # newest first
    assert f"kernel libraries {kernels}: 3 file(s)" in out and "in use" not in out

    main(["--prune", "1"])
    out = capsys.readouterr().out
    assert "compile cache: deleted 2 folder(s)" in out
    assert sorted(p.name for p in graphs.iterdir()) == ["yolox-nano-demo-aaaa"]
    assert sorted(p.name for p in kernels.iterdir()) == ["cpu_kernels-1111.so"]


def test_cache_clear_keeps_a_library_in_use(tmp_path, monkeypatch, capsys):
    graphs, kernels = _fill(tmp_path, monkeypatch)
    fd = os.open(kernels / "cpu_kernels-3333.so", os.O_RDONLY)   # as a process that loaded it does
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        main(["--prune", "0"])
        out = capsys.readouterr().out
    finally:
        os.close(fd)
    assert list(graphs.iterdir()) == []
    assert [p.name for p in kernels.iterdir()] == ["cpu_kernels-3333.so"]   # the locked one only
    assert "kept in use: cpu_kernels-3333.so" in out
    assert "cpu_kernels-3333.so  0.0 MB  built 2 min ago  in use" in out
