"""The one HTML writer: a self-contained page (figures inlined as data: URIs) of sections made of
text, tables and figures with captions. `orch report`, `orch reproduce` and `orch benchmark` all
write their pages through it."""
from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Sequence

from orchestrator.report import draw

CSS = """body{font-family:system-ui,sans-serif;max-width:1500px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f0f0f0}tr.untrusted td{background:#fde2e2}tr.flat td{background:#fdf1d6}figure{margin:1em 0}
figcaption{font-size:13px;color:#555;max-width:900px}img{max-width:100%;height:auto}"""


def escape(text: str) -> str:
    return html.escape(text)


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()) -> str:
    """`classes[i]`: the CSS class of row i (untrusted, flat), if any."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        (f'<tr class="{classes[i]}">' if i < len(classes) and classes[i] else "<tr>")
        + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(png: Path, caption: str) -> str:
    """The PNG inlined, its size from its header, and a caption naming its PNG and PDF files."""
    data = base64.b64encode(png.read_bytes()).decode()
    width, height = draw.png_size(png)
    return (f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
            f'alt="{html.escape(png.stem)}"><figcaption>{html.escape(caption)} '
            f'Files: {png.name}, {png.with_suffix(".pdf").name}.</figcaption></figure>')


def page(title: str, intro: str, sections: Sequence[tuple[str, str]], notes: Sequence[str] = ()) -> str:
    """A whole page: a title, an intro paragraph (text), sections (heading, HTML body), notes."""
    body = "".join(f"<section><h2>{html.escape(heading)}</h2>{content}</section>"
                   for heading, content in sections)
    listed = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{html.escape(intro)} Generated {time.strftime('%Y-%m-%d %H:%M')}.</p>
{body}
{f'<section><h2>Notes</h2><ul>{listed}</ul></section>' if listed else ''}
</body></html>
"""
