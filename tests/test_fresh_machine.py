"""A fresh machine: an empty data root, a course mirror on 127.0.0.1, and the lessons download what they need."""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from iresnet_mini import data
from iresnet_mini.notebook_runner import execute, notebooks

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


class _Server:
    """A static HTTP server on 127.0.0.1 for a folder, or with a handler class of the test's own."""

    def __init__(self, handler):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _mirror_of(folder: Path):
    return _Server(functools.partial(_Quiet, directory=str(folder)))


@pytest.fixture
def shared_data(mnist_available):
    if not (SHARED / "mnist").is_dir():
        pytest.skip(f"the data files to serve are not in {SHARED}")
    return SHARED


@pytest.mark.slow
@pytest.mark.parametrize("number, needs", [("05", ("test", "train")), ("07", ("test",))])
def test_a_lesson_downloads_its_data_from_a_course_mirror_into_an_empty_root(number, needs, shared_data, tmp_path,
                                                                            monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    (path,) = [p for p in notebooks() if p.name.startswith(number)]
    with _mirror_of(shared_data) as mirror:
        monkeypatch.setenv(data.ENV_VAR, str(root))
        monkeypatch.setenv(data.MIRRORS_ENV_VAR, mirror.url)
        nb, seconds = execute(path, workdir=tmp_path / "run")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    fetched = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert fetched == sorted(rel for split in needs for rel in data.MNIST_FILES[split])  # what it needs, no more
    for rel in fetched:
        data.verify(root / rel, data.MD5[rel])


class _Truncating(_Quiet):
    """Announces the whole file but sends half of it."""

    def do_GET(self):
        payload = (SHARED / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2])


class _Wrong(_Quiet):
    """Sends other bytes (the file's, reversed) under the asked-for name."""

    def do_GET(self):
        payload = (SHARED / self.path.lstrip("/")).read_bytes()[::-1]
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.mark.parametrize("handler, reason", [(_Truncating, "truncated"), (_Wrong, "md5")])
def test_a_truncated_or_wrong_file_is_refused_reported_and_not_kept(handler, reason, shared_data, tmp_path,
                                                                    monkeypatch):
    root = tmp_path / "data"
    with _Server(handler) as mirror:
        monkeypatch.setattr(data, "MNIST_MIRRORS", ())  # the course mirror only: no official source to fall back on
        monkeypatch.setenv(data.MIRRORS_ENV_VAR, mirror.url)
        with pytest.raises(data.DataError, match="could not download") as error:
            data.load_mnist("test", root=root, download=True)
    assert reason in str(error.value) and mirror.url in str(error.value)
    assert not [p for p in root.rglob("*") if p.is_file()]  # neither the bad file nor a temporary one


def test_offline_the_lesson_stops_with_the_message_saying_where_the_files_go(tmp_path, monkeypatch):
    def offline(url):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data, "_open_url", offline)
    monkeypatch.setenv(data.MIRRORS_ENV_VAR, "")
    with pytest.raises(data.DataError, match="Download it by hand and put it at"):
        data.load_mnist("test", root=tmp_path, download=True)
    assert not list(tmp_path.rglob("*.gz"))


def test_course_mirrors_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(data.MIRRORS_ENV_VAR, "http://a.example/data, http://b.example/x/")
    assert data.course_mirrors() == ["http://a.example/data/", "http://b.example/x/"]
