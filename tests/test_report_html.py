"""`report.html`: summary.md as one self-contained page, checked in a real headless browser.

The browser test drives Debian's Chromium (scripts/setup.sh installs it) through Playwright
with `executable_path`: no browser download, no network. It loads the page from disk and
fails on any console message, page error or request that is not the page itself or an
embedded `data:` image, and on any figure that did not decode at its PNG's own size.
"""

from __future__ import annotations

import base64
import re
import shutil
import struct

import pytest
from report_helpers import fake_sweep

from suite.report import write_report
from suite.report_html import REPORT_HTML, render

FIGURE = re.compile(r"!\[([^\]]*)\]\(([^)]+)\)")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk (bytes 16–24)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_render_inlines_figures_keeps_tables_and_names_a_missing_figure(tmp_path):
    figure = tmp_path / "curve.png"
    figure.write_bytes(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + struct.pack(">II", 3, 2) + b"\x08\x02\x00\x00\x00"
    )
    page = render(
        "# Sweep report: `demo`\n\n| run | loss |\n|:----|-----:|\n| a | 1.5 |\n\n"
        "![curve](curve.png)\n\n![gone](gone.png)\n\n"
        "<details><summary>rows</summary>\n\n| x |\n|---|\n| 1 |\n\n</details>\n",
        tmp_path,
    )
    assert "<title>Sweep report: demo</title>" in page
    assert '<td style="text-align:right">1.5</td>' in page  # the Markdown's alignment
    (source,) = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="curve">', page)
    assert base64.b64decode(source) == figure.read_bytes()  # byte for byte
    assert "[figure gone.png is missing]" in page and 'gone.png"' not in page
    assert "<details><summary>rows</summary>" in page and "<td>1</td>" in page  # inside
    assert "<script" not in page and "http://" not in page and "https://" not in page


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    fake_sweep(root)  # 10 runs, no ledger: the table, loss, scaling and dedup figures
    return write_report(root)


def test_report_html_renders_in_chromium_without_errors(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (scripts/setup.sh installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    figures = FIGURE.findall((report / "summary.md").read_text())
    assert len(figures) >= 3  # loss, scaling, dedup
    page_url = (report / REPORT_HTML).as_uri()
    problems, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, chromium_sandbox=False)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}"))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.url[:80]}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_url, wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth,"
                " i.naturalHeight])"
            )
            headers = page.evaluate(
                "Array.from(document.querySelectorAll('table th')).map(h => h.textContent)"
            )
            page.screenshot(path=str(tmp_path / "report.png"))
        finally:
            browser.close()
    assert problems == []
    # Self-contained: nothing but the page itself and its embedded figures was requested.
    assert [u for u in requests if not u.startswith("data:")] == [page_url]
    assert [alt for alt, *_ in images] == [alt for alt, _ in figures]
    for (alt, complete, width, height), (_, name) in zip(images, figures, strict=True):
        assert complete and (width, height) == png_size((report / name).read_bytes()), alt
    assert {"run", "size", "dataset", "final_eval_loss"} <= set(headers)
    assert png_size((tmp_path / "report.png").read_bytes()) == (1280, 900)
