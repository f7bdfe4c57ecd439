"""Giving the C heap's free memory back to the operating system after a graph compile.

A graph compile allocates the front end's IR (thousands of function graphs and nodes), most
of which is freed when it ends, but glibc keeps freed heap pages mapped, fragmented between
the blocks MindSpore keeps, and its CPU memory pool then maps the first step's activations
beside them: the process's peak RSS is the compile's garbage plus the activations. Measured
on AMD EPYC (yolox-s 320 batch 4 train step, ``VmRSS`` in GB): 0.57 after building, 1.26
after the compile, 1.05 after ``malloc_trim(0)``, peak 1.42 after the first step with it
and 1.59 without (``python -m bench.bench_train --cases s:320:4``).

:func:`release_free_memory` calls glibc's ``malloc_trim(0)`` (every arena; free pages inside
the heap are returned with ``madvise``, the blocks in use are not touched), a few ms; on a C
library without it (musl, macOS) it does nothing. Same peak cut for yolox-s 640 b2 (2.09 ->
1.75 GB) and nano 416 b8 (2.16 -> 1.91). An evaluation forward gains nothing: its peak is the
compile itself (yolox-s 640: 0.49 GB built, 0.64 compiled; ``import mindspore`` alone 0.39).
:class:`~mindyolox.training.train_step.TrainStep` calls it after compiling a graph for a new
input shape.
"""
import ctypes
import ctypes.util

__all__ = ["release_free_memory"]

_libc = []


def release_free_memory():
    """glibc ``malloc_trim(0)``: True when memory was returned, False otherwise (or no glibc)."""
    if not _libc:
        name = ctypes.util.find_library("c")
        lib = ctypes.CDLL(name) if name else None
        _libc.append(getattr(lib, "malloc_trim", None))
    trim = _libc[0]
    return bool(trim(0)) if trim is not None else False
