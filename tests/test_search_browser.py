"""The search page in a real browser (Playwright + Debian's chromium) against a real uvicorn server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from search_helpers import build_demo, serve_in_thread

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from clipforge.index.search import Searcher
    from clipforge.serve.app import create_app

    demo = build_demo(tmp_path_factory.mktemp("browser"), n=18, bad=0)
    base, stop = serve_in_thread(create_app(Searcher.open(demo["idx"])))
    yield base, demo
    stop()


@pytest.fixture(scope="module")
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def test_text_query_shows_results(server, page):
    base, _ = server
    page.goto(base + "/")
    page.wait_for_selector("#status:has-text('images indexed')")
    page.fill("#q", "a red circle")
    page.press("#q", "Enter")
    page.wait_for_selector(".card")
    assert page.locator(".card").count() == 18  # k=24 asked, 18 indexed
    page.wait_for_function("[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
    scores = [float(s) for s in page.locator(".card .score .value").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    shots = os.environ.get("CLIPFORGE_SCREENSHOT_DIR")
    if shots:  # for looking at the page by hand: CLIPFORGE_SCREENSHOT_DIR=/tmp/shots pytest ...
        page.screenshot(path=str(Path(shots) / "search-text.png"), full_page=True)


def test_image_upload_shows_similar(server, page):
    base, demo = server
    page.goto(base + "/")
    query = demo["col"] / "a" / "img007.png"
    page.set_input_files("#file", str(query))
    page.wait_for_selector(".card")
    # The collection repeats each colour+shape every 6 images, so near-twins may tie with the image itself.
    top3 = page.locator(".card .path").all_inner_texts()[:3]
    assert "a/img007.png" in top3
    assert float(page.locator(".card .score .value").first.inner_text()) > 0.99
    assert page.locator("#preview").is_visible() and page.locator("#labels-form").is_visible()
    page.fill("#labels", "circle, square, triangle")
    page.click("#labels-form button")
    page.wait_for_selector("#label-results li")
    assert page.locator("#label-results li").count() == 3
    shots = os.environ.get("CLIPFORGE_SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=str(Path(shots) / "search-image.png"), full_page=True)


def test_bad_upload_shows_message(server, page, tmp_path):
    base, _ = server
    page.goto(base + "/")
    bad = tmp_path / "notes.png"
    bad.write_text("not really an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#message:has-text('not an image')")
