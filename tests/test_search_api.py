"""The HTTP API: every endpoint and bad input (TestClient), a real uvicorn server, and a short load test."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from search_helpers import build_demo, draw, png_bytes, serve_in_thread

from clipforge.index.moderate import Concept, Moderator
from clipforge.index.search import Searcher
from clipforge.serve.app import create_app

LOAD_SECONDS = 5.0  # short in CI; benchmarks/search.py runs longer


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def searcher(demo):
    return Searcher.open(demo["idx"])


@pytest.fixture(scope="module")
def client(searcher):
    moderator = Moderator([Concept("red", ("a red shape",), threshold=-1.0), Concept("never", ("x",), 2.0)],
                          searcher.embed_texts)
    return TestClient(create_app(searcher, moderator), raise_server_exceptions=False)


def upload(data: bytes, name: str = "q.png", mime: str = "image/png"):
    return {"image": (name, data, mime)}


def test_health_and_page(client):
    h = client.get("/health").json()
    assert h == {"status": "ok", "count": 12, "dim": 16, "index": "flat", "captions": True,
                 "moderation": ["red", "never"]}
    page = client.get("/")
    assert page.status_code == 200 and "Search by image" in page.text and "/static/app.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: nothing loaded from elsewhere
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/static/..%2Fapp.py").status_code == 404


def test_text_search(client, searcher):
    r = client.get("/search", params={"q": "a red circle", "k": 5})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 5 and set(results[0]) >= {"id", "path", "score"}
    scores = [x["score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    # The scores are the cosine of the text embedding with the stored image vectors.
    q = searcher.embed_texts(["a red circle"])[0]
    stored = searcher.store.index.reconstruct(results[0]["id"]) if hasattr(searcher.store.index, "reconstruct") else None
    if stored is not None:
        assert abs(float(stored @ q) - scores[0]) < 1e-4


def test_image_search_finds_the_same_image(client, demo):
    data = (demo["col"] / "a" / "img003.png").read_bytes()
    r = client.post("/search", files=upload(data), params={"k": 3})
    assert r.status_code == 200
    top = r.json()["results"][0]
    assert top["path"] == "a/img003.png" and top["score"] > 0.99


def test_classify_and_moderate(client):
    img = png_bytes(draw((255, 0, 0), "circle"))
    r = client.post("/classify", files=upload(img), data={"labels": "circle, square ,triangle"})
    labels = r.json()["labels"]
    assert r.status_code == 200 and sorted(x["label"] for x in labels) == ["circle", "square", "triangle"]
    assert abs(sum(x["prob"] for x in labels) - 1) < 1e-4
    m = client.post("/moderate", files=upload(img)).json()
    assert m["flagged"] is True
    assert [c["flagged"] for c in m["concepts"]] == [True, False]


def test_thumbnails_only_from_the_collection(client):
    r = client.get("/thumb/0")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    assert client.get("/thumb/12345").status_code == 404
    for bad in ("/thumb/..%2F..%2Fetc%2Fpasswd", "/thumb/-1x", "/thumb/%2Fetc%2Fpasswd"):
        r = client.get(bad)
        assert r.status_code in (404, 422) and "root:" not in r.text


@pytest.mark.parametrize(
    "method,url,kwargs,status,needle",
    [
        ("get", "/search", {"params": {"q": ""}}, 400, "empty query"),
        ("get", "/search", {"params": {"q": "   "}}, 400, "empty query"),
        ("get", "/search", {}, 400, "empty query"),
        ("get", "/search", {"params": {"q": "x", "k": 0}}, 422, "k"),
        ("get", "/search", {"params": {"q": "x", "k": 101}}, 422, "k"),
        ("get", "/search", {"params": {"q": "x", "k": "ten"}}, 422, "k"),
        ("post", "/search", {"files": upload(b"plain text", "a.txt", "text/plain")}, 400, "not an image"),
        ("post", "/search", {"files": upload(b"", "e.png")}, 400, "empty"),
        ("post", "/search", {"files": upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)}, 400, "not an image"),
        ("post", "/search", {}, 422, "image"),
        ("post", "/classify", {"files": upload(png_bytes(draw((1, 2, 3), "square"))), "data": {"labels": " , "}},
         400, "no labels"),
        ("post", "/classify", {"files": upload(b"nope", "x.gif", "image/gif"), "data": {"labels": "a"}}, 400,
         "not an image"),
        ("post", "/moderate", {"files": upload(b"nope")}, 400, "not an image"),
    ],
)
def test_bad_input(client, method, url, kwargs, status, needle):
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert needle in body["error"] and "Traceback" not in r.text


def test_upload_over_limit_is_413(client):
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (20 * 1024 * 1024 + 10)
    r = client.post("/search", files=upload(big))
    assert r.status_code == 413 and "20 MB" in r.json()["error"]


def test_upload_limit_without_content_length(searcher):
    """A body that lies about (omits) its length is still cut at the per-file limit."""
    app = create_app(searcher, max_upload=1000)
    c = TestClient(app)
    r = c.post("/search", files=upload(png_bytes(draw((5, 5, 5), "circle", size=200))))
    assert r.status_code == 413


def test_errors_do_not_leak_tracebacks(searcher, monkeypatch):
    app = create_app(searcher)
    c = TestClient(app, raise_server_exceptions=False)

    def boom(*a, **k):
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(searcher, "search_vector", boom)
    r = c.get("/search", params={"q": "x"})
    assert r.status_code == 500 and r.json() == {"error": "internal server error"}


def test_moderate_unconfigured(searcher):
    c = TestClient(create_app(searcher))
    r = c.post("/moderate", files=upload(png_bytes(draw((5, 5, 5), "circle"))))
    assert r.status_code == 400 and "--concepts" in r.json()["error"]


def test_real_server_and_load(searcher, demo):
    """A real uvicorn server on 127.0.0.1: every call works over TCP; a short concurrent load has no errors."""
    base, stop = serve_in_thread(create_app(searcher))
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/health").json()["count"] == 12
            img = (demo["col"] / "b" / "img000.png").read_bytes()
            r = http.post("/search", files=upload(img), params={"k": 1})
            assert r.json()["results"][0]["path"] == "b/img000.png"
            assert http.get("/search", params={"q": ""}).status_code == 400
        latencies: list[float] = []
        errors: list[str] = []
        stop_at = time.monotonic() + LOAD_SECONDS

        def worker(n: int) -> None:
            with httpx.Client(base_url=base, timeout=10) as http:
                i = 0
                while time.monotonic() < stop_at:
                    t0 = time.perf_counter()
                    r = http.get("/search", params={"q": f"a shape number {n}-{i}", "k": 10})
                    latencies.append(time.perf_counter() - t0)
                    if r.status_code != 200 or len(r.json()["results"]) != 10:
                        errors.append(f"{r.status_code} {r.text[:100]}")
                    i += 1

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        lat = np.array(latencies) * 1000
        print(f"\nload: {len(lat)} requests in {elapsed:.1f}s = {len(lat) / elapsed:.0f} req/s, "
              f"p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, errors {len(errors)}")
        assert not errors, errors[:3]
        assert len(lat) >= 20
    finally:
        stop()
