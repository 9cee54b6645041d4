"""Result pages over HTTP: offset/more, "more like this", near-duplicate hiding, safe mode, full-size images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from search_helpers import build_demo

from clipforge.index.moderate import Concept, Moderator
from clipforge.index.search import Searcher
from clipforge.serve.app import create_app
from clipforge.serve.results import DEFAULT_DEDUP

N = 18


@pytest.fixture(scope="module")
def searcher(tmp_path_factory):
    return Searcher.open(build_demo(tmp_path_factory.mktemp("pages"), n=N, bad=0)["idx"])


@pytest.fixture(scope="module")
def flag_threshold(searcher):
    """A 'red' concept threshold at the median score of the collection: about half the images are flagged."""
    concept = searcher.embed_texts(["a red shape"])[0]
    scores = searcher.store.vectors(list(searcher.store.meta["id"])) @ concept
    return float(np.median(scores))


@pytest.fixture(scope="module")
def client(searcher, flag_threshold):
    moderator = Moderator([Concept("red", ("a red shape",), threshold=flag_threshold)], searcher.embed_texts)
    return TestClient(create_app(searcher, moderator), raise_server_exceptions=False)


def _ids(body):
    return [r["id"] for r in body["results"]]


def test_pages_concatenate_to_the_full_ranking(client):
    full = client.get("/search", params={"q": "a red circle", "k": N}).json()
    assert full["more"] is False and len(full["results"]) == N
    pages, offset = [], 0
    while True:
        body = client.get("/search", params={"q": "a red circle", "k": 5, "offset": offset}).json()
        pages += _ids(body)
        assert body["offset"] == offset
        if not body["more"]:
            break
        offset += 5
    assert pages == _ids(full) and offset == 15


def test_more_like_this_ranks_the_item_first(client, searcher):
    item = int(searcher.store.meta["id"][4])
    body = client.get(f"/similar/{item}", params={"k": 3}).json()
    assert body["results"][0]["id"] == item and body["results"][0]["score"] > 0.999
    assert client.get("/similar/99999").status_code == 404


def test_dedup_hides_near_duplicates_and_pages_stay_consistent(client, searcher):
    plain = client.get("/search", params={"q": "a square", "k": N}).json()
    dedup = client.get("/search", params={"q": "a square", "k": N, "dedup": DEFAULT_DEDUP}).json()
    kept = _ids(dedup)
    assert dedup["hidden"]["duplicates"] > 0 and len(kept) == N - dedup["hidden"]["duplicates"]
    vectors = searcher.store.vectors(kept)
    sims = vectors @ vectors.T
    assert (sims[~np.eye(len(kept), dtype=bool)] < DEFAULT_DEDUP).all()
    # Every hidden result duplicates one ranked above it that is shown.
    hidden = [i for i in _ids(plain) if i not in kept]
    for h in hidden:
        above = [i for i in kept if _ids(plain).index(i) < _ids(plain).index(h)]
        assert (searcher.store.vectors(above) @ searcher.store.vectors([h])[0]).max() >= DEFAULT_DEDUP
    first = client.get("/search", params={"q": "a square", "k": 2, "dedup": DEFAULT_DEDUP}).json()
    second = client.get("/search", params={"q": "a square", "k": 2, "offset": 2, "dedup": DEFAULT_DEDUP}).json()
    assert _ids(first) + _ids(second) == kept[:4]


def test_safe_mode_hides_flagged_results(client, searcher, flag_threshold):
    everything = client.get("/search", params={"q": "a shape", "k": N}).json()["results"]
    flagged = {r["id"] for r in everything if r["flagged"]}
    assert 0 < len(flagged) < N  # the median threshold flags some, not all
    safe = client.get("/search", params={"q": "a shape", "k": N, "safe": "true"}).json()
    assert safe["hidden"]["flagged"] == len(flagged)
    assert not flagged & set(_ids(safe)) and all(r["flagged"] is False for r in safe["results"])
    concept = searcher.embed_texts(["a red shape"])[0]
    assert all(float(searcher.store.vectors([i])[0] @ concept) >= flag_threshold for i in flagged)


def test_safe_and_dedup_on_image_queries(client, searcher):
    data = (searcher.root / "a" / "img007.png").read_bytes()
    body = client.post("/search", files={"image": ("q.png", data, "image/png")},
                       params={"k": 4, "offset": 2, "dedup": 0.9, "safe": "true"})
    assert body.status_code == 200 and body.json()["offset"] == 2


def test_full_size_image_is_reencoded(client, searcher):
    r = client.get("/image/0")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    path = searcher.store.row(0)["path"]
    assert Image.open(io.BytesIO(r.content)).size == Image.open(searcher.root / path).size
    assert client.get("/image/12345").status_code == 404
    assert client.get("/static/favicon.svg").headers["content-type"].startswith("image/svg+xml")


@pytest.mark.parametrize("params,needle", [({"offset": -1}, "offset"), ({"offset": 5000}, "offset"),
                                           ({"dedup": 0}, "dedup"), ({"dedup": 1.5}, "dedup")])
def test_bad_page_parameters(client, params, needle):
    r = client.get("/search", params={"q": "x", **params})
    assert r.status_code == 422 and needle in r.json()["error"]
