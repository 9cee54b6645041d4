"""The HTML report reads like a paper appendix: named after the run, results tables first, then curves; a Run
table without raw dicts or unset values; round axis ticks; charts as wide as the page (checked in chromium)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest
from eval_toy import color_pipeline, write_color_emoji_set

from clipforge.eval import report, suite
from clipforge.eval.runner import evaluate_and_report
from clipforge.eval.svg import line_chart, nice_ticks, tick_labels

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A training run dir (1,200 logged steps, loss falling to 0.0858) and its evaluation through the runner."""
    tmp = tmp_path_factory.mktemp("report")
    write_color_emoji_set(tmp / "emoji")
    run_dir = tmp / "tiny-emoji"
    run_dir.mkdir()
    rows = [f'{{"step": {s}, "loss": {0.0858 + 3 * math.exp(-s / 200):.4f}, "lr": {1e-3 * (1 - s / 1300):.6f}}}'
            for s in range(0, 1201, 50)]
    (run_dir / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    (run_dir / "config.yaml").write_text("seed: 3\nsteps: 1200\nmodel: tiny-vit\n")
    (run_dir / "final").mkdir()
    cfg = suite.SuiteConfig(name="emoji", emoji_root=str(tmp / "emoji"))
    result = evaluate_and_report(color_pipeline(), cfg, tmp / "out", checkpoint=str(run_dir / "final"),
                                 run_dir=run_dir, show=False)
    return {"html": (tmp / "out" / "report.html").read_text(), "result": result, "path": tmp / "out" / "report.html"}


def test_title_names_the_run_not_the_final_folder(run, tmp_path):
    assert "<h1>tiny-emoji</h1>" in run["html"] and "<title>tiny-emoji</title>" in run["html"]
    assert report.run_title("runs/demo/final") == "demo"
    assert report.run_title("runs/demo/checkpoints/step_00000600.pt") == "demo (step_00000600)"
    assert report.run_title("weights/openai-b32") == "openai-b32"
    assert report.run_title("runs/demo/final", "runs/demo") == "demo"
    assert report.run_title("elsewhere/ckpt", "runs/demo") == "demo (ckpt)"
    assert report.run_title("", None) == "clipforge evaluation"


def test_results_table_first_with_the_numbers_to_cite(run):
    html = run["html"]
    order = [html.index(f'id="{s}"') for s in ("results", "curves", "benchmarks", "run", "config")]
    assert order == sorted(order)
    results = html[html.index('id="results"'): html.index('id="curves"')]
    for key, value in run["result"].metrics.items():
        if key.endswith(".top1"):
            assert f">{100 * value:.1f}%<" in results, key
    assert ">chance<" in results and ">mean per class<" in results


def test_run_table_has_no_raw_dicts_or_unset_values(run):
    html = run["html"]
    table = html[html.index('id="run"'): html.index('id="config"')]
    cells = re.findall(r"<td>(.*?)</td>", table)
    assert cells and not any("None" in c or "{" in c or "&quot;" in c for c in cells)
    assert "<th>limit</th>" not in table  # unset: nothing to say
    assert re.search(r"<th>suite config</th><td>name emoji · ", table)
    assert "<th>train steps</th><td>1200</td>" in table


def test_axis_ticks_are_round_and_readable(run):
    curves = run["html"][run["html"].index('id="curves"'): run["html"].index('id="benchmarks"')]
    labels = re.findall(r'text-anchor="(?:end|middle)" fill="#444">([^<]*)</text>', curves)
    assert {"1,000", "0.00050", "3"} <= set(labels) and not any("e+" in t for t in labels)
    assert tick_labels(nice_ticks(0, 1234)) == ["0", "500", "1,000", "1,500"]
    assert tick_labels(nice_ticks(0.0858, 0.31)) == ["0", "0.1", "0.2", "0.3", "0.4"]
    assert tick_labels(nice_ticks(0, 12_000)) == ["0", "5k", "10k", "15k"]
    assert tick_labels(nice_ticks(0.00012, 0.00031)) == ["1.0e-04", "1.5e-04", "2.0e-04", "2.5e-04", "3.0e-04",
                                                         "3.5e-04"]
    assert tick_labels(nice_ticks(0.95, 1.0)) == ["0.94", "0.96", "0.98", "1.00"]
    ticks = nice_ticks(2.1, 4.9)
    assert ticks[0] <= 2.1 and ticks[-1] >= 4.9 and len(ticks) <= 6
    svg = line_chart([(0, 1.0), (10, 2.0)], "x")
    assert 'viewBox="0 0 ' in svg and " width=" not in svg.split(">")[0]  # scales with the page


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_charts_use_the_full_width_in_a_browser(run):
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = Path(os.environ.get("CLIPFORGE_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
    (shots / "report").mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(run["path"].as_uri())
        inner = page.evaluate("(() => { const s = document.querySelector('#curves'); const c = getComputedStyle(s);"
                              " return s.clientWidth - parseFloat(c.paddingLeft) - parseFloat(c.paddingRight); })()")
        charts = page.eval_on_selector_all("#curves svg", "els => els.map(e => e.getBoundingClientRect())")
        rows: dict[float, float] = {}
        for r in charts:  # charts side by side fill their row together
            rows[round(r["top"])] = rows.get(round(r["top"]), 0) + r["width"]
        assert all(width >= 0.95 * inner - 16 * 2 for width in rows.values()), (rows, inner)
        bars = page.eval_on_selector("#benchmarks svg", "e => e.getBoundingClientRect().width")
        assert bars >= 0.95 * inner
        page.screenshot(path=str(shots / "report" / "report-1280.png"), full_page=True)
        browser.close()
