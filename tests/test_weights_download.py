"""``--weights yolox_nano``: downloaded once from the release URL (here a local HTTP server on
127.0.0.1 serving a copy of ../shared/weights/yolox_nano.pth), checked, cached and reused;
a changed cache file is fetched again; offline, one line says where to put the file."""
import functools
import http.server
import shutil
import subprocess
import sys
import threading

import pytest

from mindyolox.convert.download import official_name, resolve_weights
from mindyolox.errors import WeightsError

from .conftest import ROOT, shared_path


@pytest.fixture()
def server(tmp_path, monkeypatch):
    root = tmp_path / "release"
    root.mkdir()
    shutil.copy(shared_path("weights", "yolox_nano.pth"), root / "yolox_nano.pth")
    (root / "yolox_tiny.pth").write_bytes(b"not a checkpoint")
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    monkeypatch.setenv("MINDYOLOX_WEIGHTS_URL", url)
    monkeypatch.setenv("MINDYOLOX_WEIGHTS_DIR", str(tmp_path / "cache"))
    yield url, requests, tmp_path / "cache"
    httpd.shutdown()


def test_official_names():
    assert [official_name(n) for n in ("yolox_s", "YOLOX-S", "yolox_darknet53", "yolox_q", "w.pth")] == \
        ["yolox_s", "yolox_s", "yolox_darknet", None, None]
    assert resolve_weights("some/file.ckpt") == "some/file.ckpt"  # not a name: the caller says "not found"


def test_download_once_check_and_reuse(server):
    url, requests, cache = server
    path = resolve_weights("yolox_nano")
    assert path == str(cache / "yolox_nano.pth")
    assert (cache / "yolox_nano.pth").read_bytes() == shared_path("weights", "yolox_nano.pth").read_bytes()
    assert (cache / "yolox_nano.pth.sha256").is_file() and not list(cache.glob("*.part"))
    assert resolve_weights("yolox-nano") == path and len(requests) == 1  # reused, not fetched again
    with open(path, "r+b") as f:  # the cached file changes: fetched again
        f.seek(100)
        f.write(b"\0" * 8)
    assert resolve_weights("yolox_nano") == path and len(requests) == 2
    assert (cache / "yolox_nano.pth").read_bytes() == shared_path("weights", "yolox_nano.pth").read_bytes()
    with pytest.raises(WeightsError, match=r"yolox_tiny: .*yolox_tiny.pth did not give a checkpoint"):
        resolve_weights("yolox_tiny")
    assert not (cache / "yolox_tiny.pth").exists()


def test_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDYOLOX_WEIGHTS_URL", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv("MINDYOLOX_WEIGHTS_DIR", str(tmp_path / "cache"))
    with pytest.raises(WeightsError, match=r"yolox_s: cannot download http://127.0.0.1:9/yolox_s.pth \(.*\); "
                                           r"put the official yolox_s.pth into .*cache/ \(or pass --weights PATH\)"):
        resolve_weights("yolox_s")
    shutil.copy(shared_path("weights", "yolox_nano.pth"), tmp_path / "cache" / "yolox_s.pth")  # put there by hand
    assert resolve_weights("yolox_s") == str(tmp_path / "cache" / "yolox_s.pth")


@pytest.mark.slow
def test_predict_takes_a_name(server, tmp_path):
    url, requests, cache = server
    import os
    p = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--config", "configs/yolox-nano.yaml", "--weights",
                        "yolox_nano", "--source", str(shared_path("data", "images", "dog.jpg")), "--save-dir",
                        str(tmp_path / "out"), "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env=dict(os.environ))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "downloaded " + url + "yolox_nano.pth" in p.stdout and "dog 0.8" in p.stdout
    assert requests == ["/yolox_nano.pth"] or len(requests) == 1


# issue 33, case 11: a hand-placed cut-short file, a hash recorded for it, a misspelt name
def test_hand_placed_truncated_weights_are_not_trusted(server, monkeypatch):
    from mindyolox.convert.download import resolve_weights
    url, requests, cache = server
    cache.mkdir()
    good = shared_path("weights", "yolox_nano.pth").read_bytes()
    dest = cache / "yolox_nano.pth"
    dest.write_bytes(good[:len(good) // 3])   # copied by hand, cut short
    monkeypatch.setenv("MINDYOLOX_WEIGHTS_URL", "http://127.0.0.1:9/")   # offline
    with pytest.raises(WeightsError) as e:
        resolve_weights("yolox_nano")
    msg = str(e.value)
    assert msg.startswith(f"{dest} cannot be used (not a PyTorch checkpoint") and "\n" not in msg
    assert "could not be downloaded again (cannot download http://127.0.0.1:9/yolox_nano.pth" in msg
    assert msg.endswith("replace it with the official yolox_nano.pth (or delete it and run again when online)")
    assert not (cache / "yolox_nano.pth.sha256").exists()   # its hash is not recorded
    monkeypatch.setenv("MINDYOLOX_WEIGHTS_URL", url)           # the network is back
    assert resolve_weights("yolox_nano") == str(dest) and dest.read_bytes() == good and len(requests) == 1


def test_hash_recorded_for_a_broken_file_recovers(server, monkeypatch):
    """A cache left by the earlier code: the truncated file's hash recorded as a bare line."""
    from mindyolox.convert.download import resolve_weights
    from mindyolox.utils.files import file_digest
    url, requests, cache = server
    cache.mkdir()
    good = shared_path("weights", "yolox_nano.pth").read_bytes()
    dest = cache / "yolox_nano.pth"
    dest.write_bytes(good[:len(good) // 3])
    (cache / "yolox_nano.pth.sha256").write_text(file_digest(dest) + "\n")
    monkeypatch.setenv("MINDYOLOX_WEIGHTS_URL", url)
    assert resolve_weights("yolox_nano") == str(dest) and dest.read_bytes() == good and len(requests) == 1
    assert resolve_weights("yolox_nano") == str(dest) and len(requests) == 1   # now trusted, not fetched again


def test_unknown_weights_name_lists_the_names():
    from mindyolox.convert.download import OFFICIAL_WEIGHTS, resolve_weights
    with pytest.raises(WeightsError) as e:
        resolve_weights("yolox_nanoo")
    msg = str(e.value)
    assert msg.startswith("--weights yolox_nanoo: no such file and not an official name; official names "
                          "(closest first): yolox_nano, ")
    assert all(n in msg for n in OFFICIAL_WEIGHTS)
    assert resolve_weights("some/file.ckpt") == "some/file.ckpt"   # a path: the caller says "not found"
