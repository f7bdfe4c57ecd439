"""``release_free_memory`` (mindyolox/runtime/heap.py) gives freed C-heap pages back: 100 MB of
small blocks freed behind one block still in use stay resident until it runs."""
import ctypes
import ctypes.util

from mindyolox.runtime.heap import release_free_memory


def _rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_freed_heap_pages_go_back_to_the_system():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4096) for _ in range(25_600)]          # 100 MB below the mmap threshold
    for b in blocks:
        ctypes.memset(b, 1, 4096)                                 # touched: resident
    keep = libc.malloc(4096)                                      # in use above them: no trim at the top
    for b in blocks:
        libc.free(b)
    before = _rss_mb()
    assert release_free_memory() is True
    assert before - _rss_mb() > 50, (before, _rss_mb())
    libc.free(keep)
