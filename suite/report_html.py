"""`report.html`: the sweep report as one self-contained page, beside `summary.md`.

The page is `summary.md` rendered — one text for both, so they never disagree — with
markdown-it-py (CommonMark plus GitHub's pipe tables, which `DataFrame.to_markdown` writes;
installed with rich), every figure the summary links inlined as a base64 PNG, and a short
stylesheet. No script, no external URL, no font or CDN: it opens offline, from a CI
artifact or a mail attachment, exactly as written.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from pathlib import Path

REPORT_HTML = "report.html"

#: Readable tables (numbers right-aligned as the Markdown says, zebra rows, a sticky header
#: for the long ones), figures at most the page's width; the system's fonts.
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24;
       max-width: 1200px; margin: 2rem auto; padding: 0 1.5rem; line-height: 1.5; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .9rem;
        font-variant-numeric: tabular-nums; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; white-space: nowrap; }
th { background: #f0f3f6; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #f8fafc; }
img { max-width: 100%; height: auto; display: block; margin: 1rem 0; }
code { background: #eff1f3; padding: .1rem .3rem; border-radius: 4px; font-size: .9em; }
details { margin: 1rem 0; } summary { cursor: pointer; color: #0b57d0; }
.missing { color: #b42318; }
footer { margin-top: 3rem; color: #57606a; font-size: .85rem; }
"""


def render(markdown_text: str, figures_dir: Path) -> str:
    """The HTML page of `markdown_text`; images it names are read from `figures_dir` and
    embedded (an image that is not there becomes a visible note, never a broken link)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable("table")

    def image(renderer, tokens, idx, options, env):
        token = tokens[idx]
        alt = html.escape(token.content or "", quote=True)
        source = figures_dir / str(token.attrGet("src") or "")
        if not source.is_file():
            return f'<span class="missing">[figure {html.escape(source.name)} is missing]</span>'
        mime = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        data = base64.b64encode(source.read_bytes()).decode("ascii")
        return f'<img src="data:{mime};base64,{data}" alt="{alt}">'

    md.add_render_rule("image", image)
    body = md.render(markdown_text)
    title = next(
        (line[2:].replace("`", "") for line in markdown_text.splitlines() if line[:2] == "# "),
        "Sweep report",
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"{body}"
        "<footer>Written by <code>suite report</code> from summary.md; figures embedded, "
        "no external resources.</footer>\n</body>\n</html>\n"
    )


def write_html(out_dir: Path, markdown_text: str) -> Path:
    """Write `out_dir/report.html` from the summary's Markdown (atomically) and return it."""
    from data_order.atomic import write_text

    path = Path(out_dir) / REPORT_HTML
    write_text(path, render(markdown_text, Path(out_dir)))
    return path
