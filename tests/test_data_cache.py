"""``data.cache: disk``: one file per dataset and size, built once however many processes ask
at the same time, read by the loader's workers, the same batches as without a cache, a
truncated file rebuilt, no room refused, and a reader's memory flat as the dataset grows."""
import logging
import multiprocessing
import os

import numpy as np
import pytest

from mindyolox.data import build_dataset, create_train_loader
from mindyolox.data.cache import open_disk_cache
from mindyolox.errors import DataError

from .test_bench_compare import _bench_module
from .test_data_loader import AUG, TRAIN, _data, _epochs

SIZE = (96, 96)


def _open_in_child(folder, queue):
    ds = build_dataset(_data(), "train")
    cache = open_disk_cache(ds, SIZE, folder, workers=2)
    queue.put((cache.built, [int(cache[i].sum()) for i in range(len(ds))]))


@pytest.mark.slow
def test_two_ranks_at_once_build_one_file(tmp_path, caplog):
    folder = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")  # fresh processes, as two ranks are
    queue = ctx.Queue()
    with caplog.at_level(logging.INFO, logger="mindyolox.data"):
        procs = [ctx.Process(target=_open_in_child, args=(folder, queue)) for _ in range(2)]
        for p in procs:
            p.start()
        sums = [queue.get(timeout=300) for _ in procs]
        for p in procs:
            p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(s[0] for s in sums) == [False, True]  # one built it, the other waited and opened it
    assert sums[0][1] == sums[1][1]
    files = sorted(p.name for p in folder.iterdir())
    data = [f for f in files if f.endswith(".u8")]
    assert len(data) == 1 and len(files) == 3  # data, completion record, lock
    # one file of N * H * W * 3 bytes: the size counted once for both "ranks"
    assert (folder / data[0]).stat().st_size == 16 * SIZE[0] * SIZE[1] * 3
    # and what it holds is what the dataset gives without a cache
    ds = build_dataset(_data(), "train")
    direct = [ds.load_resized(i, SIZE)[0] for i in range(len(ds))]
    cache = open_disk_cache(ds, SIZE, folder)
    for i, img in enumerate(direct):
        np.testing.assert_array_equal(cache[i], img)


def test_training_batches_from_the_cache_equal_those_without(tmp_path):
    plain = _epochs(create_train_loader(_data(), AUG, TRAIN, num_workers=2), 2)
    cached_cfg = _data(input_size=[96, 96], cache="disk", cache_dir=str(tmp_path / "c"))
    cached = _epochs(create_train_loader(cached_cfg, AUG, TRAIN, num_workers=2), 2)
    assert len(plain[0]) == len(cached[0]) == 4
    for ep_a, ep_b in zip(plain, cached):
        for (ia, la), (ib, lb) in zip(ep_a, ep_b):
            np.testing.assert_array_equal(ia, ib)
            np.testing.assert_array_equal(la, lb)


def test_truncated_cache_is_rebuilt_with_a_message(tmp_path, caplog):
    ds = build_dataset(_data(), "train")
    cache = open_disk_cache(ds, SIZE, tmp_path, workers=1)
    with open(cache.path, "r+b") as f:
        f.truncate(cache.nbytes // 3)
    with caplog.at_level(logging.INFO, logger="mindyolox.data"):
        again = open_disk_cache(ds, SIZE, tmp_path, workers=1)
    messages = [r.getMessage() for r in caplog.records]
    assert any("is incomplete" in m and "rebuilding" in m for m in messages), messages
    assert os.path.getsize(again.path) == cache.nbytes
    np.testing.assert_array_equal(again[15], ds.load_resized(15, SIZE)[0])
    # a build that never finished (no completion record) is rebuilt too
    os.remove(again.path[:-3] + ".json")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mindyolox.data"):
        open_disk_cache(ds, SIZE, tmp_path, workers=1)
    assert any("no completion record" in r.getMessage() for r in caplog.records)


def test_no_room_is_refused_in_one_line(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple
    ds = build_dataset(_data(), "train")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(DataError, match=r"data.cache=disk: .* has 0.00 GB free, the cache of .* needs 0.00 GB"):
        open_disk_cache(ds, SIZE, tmp_path)
    assert not list(tmp_path.glob("*.u8"))


@pytest.mark.slow
def test_a_reader_of_the_disk_cache_keeps_flat_memory(tmp_path):
    """The peak RSS of a process reading every image once through the disk cache (built by an
    earlier process, as by another rank), over its RSS with the annotations loaded, does not
    grow with the dataset; with the RAM cache it grows by about the images' size (coco128 x1
    and x5 at 160: 128 vs 640 images, <= 38 MB more pixels)."""
    bench = _bench_module("bench_cache")
    anns = {n: bench.coco128_copies(tmp_path, n) for n in (1, 5)}
    for ann in anns.values():
        bench.peak_rss(ann, "disk", (160, 160), tmp_path / "cache")  # build (the "other rank")

    def growth(mode, ann):  # peak RSS while caching and reading, over the RSS with the dataset loaded
        r = bench.peak_rss(ann, mode, (160, 160), tmp_path / "cache")
        return r["peak_mb"] - r["before_mb"]
    disk = {n: growth("disk", ann) for n, ann in anns.items()}
    ram = {n: growth("ram", ann) for n, ann in anns.items()}
    pixels_mb = 512 * 160 * 160 * 3 / 2**20  # upper bound of the extra pixels (resized images <= 160x160)
    assert ram[5] - ram[1] > 0.5 * pixels_mb, ram
    assert disk[5] - disk[1] < 0.25 * pixels_mb, disk
    print(f"RSS growth while reading, MB: disk cache {disk}, ram cache {ram}, extra pixels <= {pixels_mb:.0f} MB")
