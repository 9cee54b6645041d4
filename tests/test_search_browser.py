"""The search page in a real browser (Playwright + Debian's chromium) against a real uvicorn server, at desktop
(1280 px) and phone (390 px) widths. Screenshots are kept in test-artifacts/search-page/ (git-ignored; set
CLIPFORGE_ARTIFACTS to put them elsewhere) for looking at the page by hand."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from search_helpers import build_demo, serve_in_thread

from clipforge.index.moderate import Concept, Moderator

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
WIDTHS = {"desktop": 1280, "phone": 390}
N = 18

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def _artifacts() -> Path:
    root = Path(os.environ.get("CLIPFORGE_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
    out = root / "search-page"
    out.mkdir(parents=True, exist_ok=True)
    return out


def shot(page, name: str) -> None:
    width = page.viewport_size["width"]
    page.screenshot(path=str(_artifacts() / f"{name}-{width}.png"), full_page=True)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two servers over one index: with a 'red' moderation concept (flags about half the images) and without."""
    from clipforge.index.search import Searcher
    from clipforge.serve.app import create_app

    demo = build_demo(tmp_path_factory.mktemp("browser"), n=N, bad=0)
    searcher = Searcher.open(demo["idx"])
    concept = searcher.embed_texts(["a red shape"])[0]
    threshold = float(np.median(searcher.store.vectors(list(searcher.store.meta["id"])) @ concept))
    moderator = Moderator([Concept("red", ("a red shape",), threshold)], searcher.embed_texts)
    base, stop = serve_in_thread(create_app(searcher, moderator))
    plain, stop_plain = serve_in_thread(create_app(searcher))
    yield {"base": base, "plain": plain, "demo": demo}
    stop()
    stop_plain()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(params=list(WIDTHS), ids=list(WIDTHS))
def page(request, browser):
    width = WIDTHS[request.param]
    context = browser.new_context(viewport={"width": width, "height": 900 if width > 600 else 844},
                                  is_mobile=width < 600, has_touch=width < 600)
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def ready(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#status:has-text('images indexed')")


def results(page, count: int | None = None) -> None:
    if count is None:
        page.wait_for_selector(".card")
    else:
        page.wait_for_function(f"document.querySelectorAll('.card').length === {count}")
    # Thumbnails load lazily: scroll through the page so every one loads (for the check and the screenshots).
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_function("[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
    page.evaluate("window.scrollTo(0, 0)")


def ids(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all(".card", "els => els.map(e => e.dataset.id)")]


# Everything visible lies inside the viewport, nothing scrolls sideways, and no button or score is cut.
OVERFLOW_JS = """() => {
  const w = document.documentElement.clientWidth, bad = [];
  if (document.documentElement.scrollWidth > w) bad.push('page scrolls sideways: ' + document.documentElement.scrollWidth);
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (!r.width || getComputedStyle(el).visibility === 'hidden') continue;
    if (r.left < -0.5 || r.right > w + 0.5) bad.push(`${el.tagName}.${el.className} spans ${r.left}..${r.right}`);
    if (el.matches('button, .score .value, .label-results .value, .badge, label') && el.scrollWidth > el.clientWidth + 1)
      bad.push(`${el.tagName}.${el.className} text cut: ${el.scrollWidth} > ${el.clientWidth}`);
  }
  return bad;
}"""


def test_text_query_url_state_and_bars(servers, page):
    ready(page, servers["base"] + "/")
    assert page.locator("#labels-form").is_hidden()  # no image yet: nothing to classify
    assert page.locator("#safe-option").is_visible()  # this server has moderation concepts
    page.locator("#safe").uncheck()  # show everything, flagged results badged
    page.fill("#q", "a red circle")
    page.press("#q", "Enter")
    results(page)
    assert "q=a+red+circle" in page.url and "safe=0" in page.url  # shareable
    assert page.locator(".card").count() == N  # k=24 asked, 18 indexed
    scores = [float(s) for s in page.locator(".card .score .value").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    widths = page.eval_on_selector_all(".card .bar i", "els => els.map(e => parseFloat(e.style.width))")
    assert widths[0] == 100 and widths[-1] == 8 and widths == sorted(widths, reverse=True)
    assert page.locator(".card.flagged .badge").count() > 0
    assert page.evaluate(OVERFLOW_JS) == []
    shot(page, "text-query")
    # Opening the shared URL in a fresh page runs the same search.
    first = ids(page)
    ready(page, page.url)
    results(page, N)
    assert ids(page) == first and page.input_value("#q") == "a red circle"


def test_image_upload_classify_and_click_through(servers, page):
    ready(page, servers["base"] + "/")
    query = servers["demo"]["col"] / "a" / "img007.png"
    page.set_input_files("#file", str(query))
    results(page)
    # The collection repeats each colour+shape every 6 images, so near-twins may tie with the image itself.
    assert "a/img007.png" in page.locator(".card .path").all_inner_texts()[:3]
    assert float(page.locator(".card .score .value").first.inner_text()) > 0.99
    assert page.locator("#preview").is_visible() and page.locator("#labels-form").is_visible()
    page.fill("#labels", "circle, square, a rather long label that has to be cut on a phone screen")
    page.click("#labels-form button")
    page.wait_for_selector("#label-results li")
    assert page.locator("#label-results li").count() == 3
    assert page.evaluate(OVERFLOW_JS) == []
    shot(page, "image-query")
    # Open full size: the card's image links to the re-encoded original.
    first = page.locator(".card").first
    with page.expect_popup() as popup:
        first.locator("a.open").click()
    full = popup.value
    full.wait_for_load_state()
    assert full.url.endswith(f"/image/{first.get_attribute('data-id')}")
    assert full.evaluate("document.images[0].naturalWidth") == 48  # the collection's images are 48 px
    full.close()
    # More like this: a search by that indexed image, in the URL.
    second = page.locator(".card").nth(1)
    item = int(second.get_attribute("data-id"))
    second.locator("button.like").click()
    page.wait_for_selector("#message:has-text('images like')")
    results(page)
    assert f"like={item}" in page.url
    assert item in ids(page)[:3]  # near-twins in the collection may tie with the item itself
    assert float(page.locator(f".card[data-id='{item}'] .score .value").inner_text()) > 0.999
    page.go_back()  # the previous URL (no query) is back; the history entry was real
    assert "like=" not in page.url


def test_load_more_and_near_duplicates(servers, page):
    ready(page, servers["base"] + "/?q=a+square&safe=0")
    results(page, N)
    everything = ids(page)
    page.select_option("#k", "12")
    results(page, 12)
    assert page.locator("#load-more").is_visible()
    page.click("#load-more")
    results(page, N)
    assert ids(page) == everything and page.locator("#load-more").is_hidden()
    page.check("#dedup")
    page.wait_for_selector("#message:has-text('near-duplicates hidden')")
    results(page)
    kept = ids(page)
    assert len(kept) < N and len(set(kept)) == len(kept) and "dedup=1" in page.url
    assert kept == [i for i in everything if i in kept]  # the same ranking with duplicates left out
    assert page.evaluate(OVERFLOW_JS) == []
    shot(page, "dedup")


def test_safe_mode_hides_flagged(servers, page):
    ready(page, servers["base"] + "/?q=a+shape&safe=0")
    results(page, N)
    flagged = {int(x) for x in page.eval_on_selector_all(".card.flagged", "els => els.map(e => e.dataset.id)")}
    assert 0 < len(flagged) < N
    page.check("#safe")
    page.wait_for_selector("#message:has-text('flagged hidden')")
    results(page, N - len(flagged))
    assert not flagged & set(ids(page)) and "safe=0" not in page.url
    shot(page, "safe-mode")
    ready(page, servers["plain"] + "/?q=a+shape")  # a server without concepts has no safe-mode toggle
    results(page, N)
    assert page.locator("#safe-option").is_hidden() and page.locator(".card.flagged").count() == 0


def test_favicon_and_bad_upload(servers, page, tmp_path):
    ready(page, servers["base"] + "/")
    href = page.get_attribute("link[rel=icon]", "href")
    assert page.request.get(servers["base"] + href).headers["content-type"].startswith("image/svg+xml")
    bad = tmp_path / "notes.png"
    bad.write_text("not really an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#message:has-text('not an image')")
