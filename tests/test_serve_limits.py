"""The server's guards against hostile or careless clients, over a real uvicorn server on 127.0.0.1.

Chunked uploads are cut as the bytes arrive (measured: bytes the server wrote to its temp directory), images over
the pixel budget get 400 before decoding, decodes are bounded, foreign Host headers are refused (DNS rebinding),
/classify caps its labels.
"""

from __future__ import annotations

import io
import os
import select
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from search_helpers import build_demo, draw, png_bytes, png_header_only, serve_in_thread

from clipforge.cli import main
from clipforge.index.search import Searcher
from clipforge.serve import app as app_module
from clipforge.serve.app import MAX_LABEL_CHARS, MAX_LABELS, create_app
from clipforge.serve.guard import LOOPBACK_HOSTS, host_name


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("limits"))


@pytest.fixture(scope="module")
def searcher(demo):
    return Searcher.open(demo["idx"])


def upload(data: bytes, name: str = "q.png", mime: str = "image/png"):
    return {"image": (name, data, mime)}


class TempBytes:
    """Peak bytes held by this process's open files under ``root`` (tempfile's files are unlinked at creation,
    so only /proc/self/fd sees them), sampled every few milliseconds while running."""

    def __init__(self, root: Path) -> None:
        self.root, self.peak, self._stop = str(root), 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            total = 0
            for fd in os.listdir("/proc/self/fd"):
                try:
                    if os.readlink(f"/proc/self/fd/{fd}").startswith(self.root):
                        total += os.stat(f"/proc/self/fd/{fd}").st_size
                except OSError:
                    continue  # closed between listing and reading
            self.peak = max(self.peak, total)
            time.sleep(0.002)

    def __enter__(self) -> TempBytes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def chunked_upload(base: str, path: str, total: int, chunk: int = 256 * 1024, host: str | None = None):
    """POST a multipart image of ``total`` bytes with Transfer-Encoding: chunked (no Content-Length), as curl
    does; stops sending as soon as the server answers. Returns (status, body, bytes sent)."""
    hostport = base.removeprefix("http://")
    name, port = hostport.rsplit(":", 1)
    boundary = "clipforgeboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode()
    sock = socket.create_connection((name, int(port)))
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {host or hostport}\r\nTransfer-Encoding: chunked\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode())
    sent, payload, reply = 0, b"\x89PNG\r\n\x1a\n" + b"\0" * (chunk - 8), b""
    try:
        for piece in [head] + [payload] * (total // chunk):
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered: stop, as a client reading responses would
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        else:
            sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(boundary) + 8, f"\r\n--{boundary}--\r\n".encode()))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed after answering; the answer is still in the receive buffer
    sock.settimeout(10)
    try:
        while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < 10:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    status = int(reply.split(b" ", 2)[1]) if reply else 0
    return status, reply.split(b"\r\n\r\n", 1)[-1], sent


def test_chunked_upload_is_cut_as_bytes_arrive(searcher, tmp_path, monkeypatch):
    """A 24 MB chunked upload against a 1 MB limit: 413, and the server's temp files never exceed the limit."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where multipart parsing spools uploaded files
    limit = 1024 * 1024
    base, stop = serve_in_thread(create_app(searcher, max_upload=limit))
    try:
        with TempBytes(spool) as disk:
            status, body, sent = chunked_upload(base, "/search", 24 * limit)
        assert status == 413, body
        assert b"upload larger than 1 MB" in body
        # The body limit is the file limit plus 64 KiB of form overhead; nothing past it was ever written.
        assert disk.peak <= limit + 64 * 1024, disk.peak
        # And the server stays usable.
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/health").status_code == 200
    finally:
        stop()
    print(f"\nchunked 24 MB upload, 1 MB limit: peak temp bytes {disk.peak}, client sent {sent} before the 413")


def test_chunked_upload_within_limit_works(searcher, demo):
    """The counting wrapper passes a normal chunked upload through untouched."""
    base, stop = serve_in_thread(create_app(searcher))
    img = (demo["col"] / "b" / "img000.png").read_bytes()

    def chunks():
        for i in range(0, len(img), 100):
            yield img[i:i + 100]

    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            # httpx sends a generator body chunked; build the multipart by hand around it.
            boundary = b"b0undary"

            def body():
                yield (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.png\""
                       b"\r\nContent-Type: image/png\r\n\r\n")
                yield from chunks()
                yield b"\r\n--" + boundary + b"--\r\n"
            r = http.post("/search", params={"k": 1}, content=body(),
                          headers={"content-type": "multipart/form-data; boundary=b0undary"})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["path"] == "b/img000.png"
    finally:
        stop()


def test_over_budget_png_is_400_before_decoding(searcher):
    client = TestClient(create_app(searcher), raise_server_exceptions=False)
    r = client.post("/search", files=upload(png_header_only(12500, 12500)))
    assert r.status_code == 400
    assert r.json()["error"].startswith("image too large: q.png: 12500x12500 pixels (156.2 Mpx)"), r.json()
    # A configured budget applies to every endpoint that decodes.
    small = TestClient(create_app(searcher, max_pixels=1000), raise_server_exceptions=False)
    for url in ("/search", "/classify"):
        r = small.post(url, files=upload(png_bytes(draw((9, 9, 9), "circle", size=48))), data={"labels": "a"})
        assert r.status_code == 400 and "over the decoding budget of 0.0 Mpx" in r.json()["error"], r.text


def test_over_budget_jpeg_is_decoded_reduced(searcher):
    """A JPEG over the budget decodes at a reduced DCT scale instead of being refused (CLIP needs 224 px)."""
    buf = io.BytesIO()
    draw((200, 30, 30), "circle", size=2000).save(buf, format="JPEG")
    client = TestClient(create_app(searcher, max_pixels=1_000_000), raise_server_exceptions=False)
    r = client.post("/search", files=upload(buf.getvalue(), "big.jpg", "image/jpeg"), params={"k": 1})
    assert r.status_code == 200, r.text


def test_decodes_are_bounded(searcher, demo, monkeypatch):
    """With one decode slot, eight concurrent uploads are decoded one at a time (and all succeed)."""
    active, peak, lock = [0], [0], threading.Lock()
    real = app_module.load_image

    def slow_load(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(app_module, "load_image", slow_load)
    base, stop = serve_in_thread(create_app(searcher, decode_slots=1))
    img = (demo["col"] / "b" / "img000.png").read_bytes()
    statuses: list[int] = []

    def post() -> None:
        with httpx.Client(base_url=base, timeout=20) as http:
            statuses.append(http.post("/search", files=upload(img), params={"k": 1}).status_code)

    try:
        threads = [threading.Thread(target=post) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop()
    assert statuses == [200] * 8
    assert peak[0] == 1


@pytest.mark.parametrize(("header", "name"), [("127.0.0.1:8000", "127.0.0.1"), ("[::1]:80", "::1"), ("::1", "::1"),
                                              ("LocalHost", "localhost"), ("evil.example:8000", "evil.example")])
def test_host_name(header, name):
    assert host_name(header) == name


def test_loopback_server_refuses_foreign_host(searcher):
    """DNS rebinding: a request that reached 127.0.0.1 under another name is refused; loopback names work."""
    base, stop = serve_in_thread(create_app(searcher, allowed_hosts=LOOPBACK_HOSTS))
    port = base.rsplit(":", 1)[1]
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/health").status_code == 200
            assert http.get("/health", headers={"host": f"localhost:{port}"}).status_code == 200
            for host in (f"evil.example:{port}", "evil.example", "127.0.0.1.evil.example", ""):
                r = http.get("/search", params={"q": "x"}, headers={"host": host})
                assert r.status_code == 400 and "Host header" in r.json()["error"], (host, r.text)
            status, body, _ = chunked_upload(base, "/search", 1024 * 1024, host="evil.example")
            assert status == 400
    finally:
        stop()


def test_classify_caps_labels(searcher):
    client = TestClient(create_app(searcher), raise_server_exceptions=False)
    img = upload(png_bytes(draw((9, 9, 9), "circle")))
    r = client.post("/classify", files=img, data={"labels": ",".join(f"l{i}" for i in range(MAX_LABELS + 1))})
    assert r.status_code == 400 and f"at most {MAX_LABELS}" in r.json()["error"]
    r = client.post("/classify", files=img, data={"labels": "cat," + "x" * (MAX_LABEL_CHARS + 1)})
    assert r.status_code == 400 and f"at most {MAX_LABEL_CHARS}" in r.json()["error"]
    started = time.perf_counter()
    ok = client.post("/classify", files=img, data={"labels": ",".join(f"label {i}" for i in range(MAX_LABELS))})
    assert ok.status_code == 200 and len(ok.json()["labels"]) == MAX_LABELS
    print(f"\n/classify with {MAX_LABELS} labels: {time.perf_counter() - started:.2f}s")


def test_serve_bad_port_fails_before_loading(tmp_path, capsys):
    """--port 99999 is refused in one line before the index or model is read (the index here does not exist)."""
    assert main(["serve", "--index", str(tmp_path / "missing"), "--port", "99999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "error: --port 99999 is not a TCP port" and err[1].startswith("  hint:") and len(err) == 2
