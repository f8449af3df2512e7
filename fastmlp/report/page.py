"""The report as a page: sections of blocks, written as one self-contained HTML file and as
Markdown with its figures beside it.

``index.html`` embeds every figure as a ``data:`` URI and its style sheet inline, so it
needs no network and no other file: it can be mailed, uploaded or opened from a USB stick.
Its layout is one readable column that narrows to a phone's width (figures scale down,
wide tables and code scroll inside their box) and prints without the navigation bar, each
figure kept on one page. ``report.md`` has the same sections, referring to the PNG files
in its folder.

Text in blocks is plain text in which ```code``` spans are marked with backticks; it is
escaped for HTML, never interpreted as markup.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Code:
    """A block of code or a command; ``caption`` says what it is."""

    text: str
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    """A PNG file in the report's folder, and what it shows."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str = ""


Block = Paragraph | Bullets | Code | Figure | Table


@dataclass
class Section:
    """One question of the report: its anchor (``q1``...), title and blocks."""

    anchor: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


STYLE = """
:root { color-scheme: light; --ink: #1b1f23; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #fff; }
header, main { max-width: 62rem; margin: 0 auto; padding: 0 1rem; }
header { padding-top: 1.5rem; }
h1 { font-size: 1.7rem; margin: 0 0 .3rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .6rem; padding-top: .6rem;
     border-top: 1px solid var(--line); }
nav { position: sticky; top: 0; background: #f6f8fa; border-bottom: 1px solid var(--line);
      padding: .4rem 1rem; overflow-x: auto; white-space: nowrap; z-index: 1; }
nav a { margin-right: .9rem; color: #0550ae; text-decoration: none; font-weight: 600; }
.meta { color: var(--muted); font-size: .92rem; }
figure { margin: 1rem 0; break-inside: avoid; page-break-inside: avoid; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .9rem; margin-top: .3rem; }
pre { background: #f6f8fa; border: 1px solid var(--line); padding: .7rem; overflow-x: auto;
      font-size: .85rem; line-height: 1.4; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
p code, li code, td code { background: #f6f8fa; padding: 0 .2em; border-radius: 3px; }
.table { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: left; }
th { background: #f6f8fa; }
.caption { color: var(--muted); font-size: .9rem; margin: .2rem 0; }
@media (max-width: 40rem) { body { font-size: 15px; } h1 { font-size: 1.4rem; } }
@media print { nav { display: none; } h2 { break-after: avoid; } a { color: inherit; } }
"""

_CODE_SPAN = re.compile(r"`([^`]+)`")


def _inline_html(text: str) -> str:
    """Plain text with `code` spans, escaped for HTML."""
    parts = _CODE_SPAN.split(str(text))
    return "".join(
        f"<code>{html.escape(part)}</code>" if index % 2 else html.escape(part)
        for index, part in enumerate(parts)
    )


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _block_html(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{_inline_html(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Code):
        caption = f'<p class="caption">{_inline_html(block.caption)}</p>' if block.caption else ""
        return f"{caption}<pre><code>{html.escape(block.text)}</code></pre>"
    if isinstance(block, Figure):
        caption = _inline_html(block.caption)
        return (
            f'<figure><img src="{_data_uri(block.path)}" alt="{html.escape(block.caption)}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    head = "".join(f"<th>{_inline_html(cell)}</th>" for cell in block.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline_html(_cell(cell))}</td>" for cell in row) + "</tr>"
        for row in block.rows
    )
    caption = f'<p class="caption">{_inline_html(block.caption)}</p>' if block.caption else ""
    return f'{caption}<div class="table"><table><tr>{head}</tr>{body}</table></div>'


def render_html(title: str, meta: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole page: a title, lines about how it was made, and the sections."""
    navigation = "".join(
        f'<a href="#{section.anchor}">{html.escape(section.anchor.upper())}</a>'
        for section in sections
    )
    body = "".join(
        f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>'
        + "".join(_block_html(block) for block in section.blocks)
        + "</section>"
        for section in sections
    )
    meta_html = "".join(f'<p class="meta">{_inline_html(line)}</p>' for line in meta)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1>{meta_html}</header>"
        f"<nav>{navigation}</nav><main>{body}</main></body></html>\n"
    )


def _markdown_cell(value: Any) -> str:
    return _cell(value).replace("|", "\\|").replace("\n", " ")


def _block_markdown(block: Block, folder: Path) -> str:
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Code):
        fence = "````" if "```" in block.text else "```"
        caption = f"{block.caption}\n\n" if block.caption else ""
        return f"{caption}{fence}\n{block.text}\n{fence}"
    if isinstance(block, Figure):
        return (
            f"![{block.caption}]({block.path.relative_to(folder).as_posix()})\n\n*{block.caption}*"
        )
    lines = [
        "| " + " | ".join(_markdown_cell(cell) for cell in block.header) + " |",
        "|" + "---|" * len(block.header),
        *("| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in block.rows),
    ]
    return (f"{block.caption}\n\n" if block.caption else "") + "\n".join(lines)


def render_markdown(
    title: str, meta: Sequence[str], sections: Sequence[Section], folder: Path
) -> str:
    """The same page as Markdown; figures are linked relative to ``folder``."""
    parts = [f"# {title}", *meta]
    for section in sections:
        parts.append(f'<a id="{section.anchor}"></a>\n\n## {section.title}')
        parts.extend(_block_markdown(block, folder) for block in section.blocks)
    return "\n\n".join(parts) + "\n"
