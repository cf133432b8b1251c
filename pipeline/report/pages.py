"""Report pages: one list of blocks rendered both as a self-contained HTML page and as its Markdown twin.

A block is a tuple: ("h2" | "h3" | "p", text), ("h2", text, anchor) (a heading others link to),
("warning", text), ("note", text) (small print), ("table", DataFrame), ("image", file name,
caption), ("images", [(file name, caption), ...]) (side by side), ("links", [(text, file name),
...]), ("toc", [(text, anchor), ...]) (a line of links to headings), ("details", summary, [blocks])
(collapsed until clicked; in Markdown a heading) or ("gallery", [Tile, ...]) (thumbnails with
captions, each linked to its file). Reports build the list once and `render` writes both pages from
it, so the two never disagree. Pages use no network fonts or scripts: only their own images beside
them (the runs index adds one small inline script of its own).

Labels, paths and values come from users and from files others made, so every cell and text is
escaped (HTML entities; in Markdown also backslash-escaped punctuation, one line per cell) and
every link target is URL-quoted.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import quote

import pandas as pd

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:70rem;padding:0
1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem
.5rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
.warning{background:#fff3cd;border:1px solid #e0c36c;padding:.5rem 1rem}.muted,.note{color:#666;font-size:.85rem}
.wide{overflow-x:auto;max-width:100%}td{overflow-wrap:break-word}.row{display:flex;gap:.5rem;flex-wrap:wrap}
.row img{max-width:calc(50% - .5rem)}nav.toc{margin:1rem 0;line-height:1.8}details{margin:.5rem 0}
summary{cursor:pointer;color:#245}.gallery{display:flex;flex-wrap:wrap;gap:.75rem}figure{margin:0;max-width:100%}
figcaption{font-size:.8rem;max-width:34rem;overflow-wrap:anywhere}figure img{display:block}
"""

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]#!|~$])")


@dataclass(frozen=True)
class Tile:
    """One thumbnail of a gallery: `image` (a file beside the page, or None: `missing` says why), `link`
    (the file it shows, as a URL already quoted: `file:///...`), `title` and caption `lines` (plain text)."""

    image: str | None
    link: str
    title: str
    lines: tuple[str, ...] = ()
    missing: str = ""


def anchor(text: str) -> str:
    """The id of a heading, as GitHub makes it from the heading's text, so the Markdown twin's links work too."""
    return re.sub(r"[^\w\- ]", "", str(text).lower()).replace(" ", "-")


def page(title: str, body: str) -> str:
    """A complete HTML document with the shared look."""
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def render(title: str, blocks: list[tuple]) -> tuple[str, str]:
    """The HTML page and the Markdown document of `blocks` under `title`."""
    markdown = f"# {markdown_text(title)}\n\n" + "\n\n".join(markdown_block(block) for block in blocks) + "\n"
    return page(title, "".join(html_block(block) for block in blocks)), markdown


def table(frame: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    """An HTML table of a DataFrame, floats rounded, text escaped; it scrolls sideways rather than widen the page."""
    body = frame.to_html(index=False, escape=True, border=0, float_format=float_format.format, na_rep="")
    return f"<div class='wide'>{body}</div>"


def warning(text: str) -> str:
    return f"<p class='warning'>{html.escape(text)}</p>"


def markdown_text(value) -> str:
    """`value` shown literally in Markdown: on one line, HTML characters as entities, and the
    punctuation that makes links, code, emphasis, table cells, headings or math backslash-escaped."""
    text = " ".join(str(value).splitlines())
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", html.escape(text, quote=False))


def markdown_table(frame: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    """A Markdown table of a DataFrame, floats rounded, missing values empty, every cell escaped."""

    def cell(value) -> str:
        if pd.api.types.is_scalar(value) and pd.isna(value):
            return ""
        return float_format.format(value) if isinstance(value, float) else markdown_text(value)

    lines = ["| " + " | ".join(map(markdown_text, frame.columns)) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def html_block(block: tuple) -> str:
    """One block as HTML (see the module docstring for the kinds)."""
    kind, *content = block
    if kind == "table":
        return table(content[0])
    if kind == "warning":
        return warning(content[0])
    if kind == "image":
        return f"<p><img src='{html.escape(quote(content[0]))}' alt='{html.escape(content[1])}'></p>"
    if kind == "images":
        return "<div class='row'>" + "".join(_img(name, caption) for name, caption in content[0]) + "</div>"
    if kind == "h2" and len(content) > 1:
        return f"<h2 id='{html.escape(content[1])}'>{html.escape(content[0])}</h2>"
    if kind == "toc":
        targets = " · ".join(f"<a href='#{html.escape(quote(to))}'>{html.escape(text)}</a>" for text, to in content[0])
        return f"<nav class='toc'>Contents: {targets}</nav>"
    if kind == "details":
        inner = "".join(html_block(block) for block in content[1])
        return f"<details><summary>{html.escape(content[0])}</summary>{inner}</details>"
    if kind == "gallery":
        return "<div class='gallery'>" + "".join(map(_tile, content[0])) + "</div>"
    if kind == "note":
        return f"<p class='note'>{html.escape(content[0])}</p>"
    if kind == "links":
        return "<p>" + _links(content[0]) + "</p>"
    return f"<{kind}>{html.escape(content[0])}</{kind}>"


def markdown_block(block: tuple) -> str:
    """One block as Markdown (see the module docstring for the kinds)."""
    kind, *content = block
    if kind == "table":
        return markdown_table(content[0])
    if kind == "warning":
        return f"> **Warning:** {markdown_text(content[0])}"
    if kind == "image":
        return f"![{markdown_text(content[1])}]({quote(content[0])})"
    if kind == "images":
        return "\n\n".join(markdown_block(("image", name, caption)) for name, caption in content[0])
    if kind == "links":
        return " · ".join(f"[{markdown_text(text)}]({quote(href)})" for text, href in content[0])
    if kind == "toc":
        return "Contents: " + " · ".join(f"[{markdown_text(text)}](#{quote(target)})" for text, target in content[0])
    if kind == "details":
        return "\n\n".join([f"### {markdown_text(content[0])}", *map(markdown_block, content[1])])
    if kind == "gallery":
        return "\n".join(map(_markdown_tile, content[0]))
    return {"h2": "## ", "h3": "### "}.get(kind, "") + markdown_text(content[0])


def _links(links) -> str:
    """HTML links, targets URL-quoted and texts escaped."""
    return " · ".join(f"<a href='{html.escape(quote(href))}'>{html.escape(text)}</a>" for text, href in links)


def _img(name: str, caption: str) -> str:
    return f"<img src='{html.escape(quote(name))}' alt='{html.escape(caption)}' loading='lazy'>"


def _tile(tile: Tile) -> str:
    """A gallery's figure: the thumbnail (or the reason there is none) linked to its file, then the caption."""
    link = html.escape(tile.link)
    shown = _img(tile.image, tile.title) if tile.image else f"<span class='muted'>{html.escape(tile.missing)}</span>"
    lines = "".join(f"<br>{html.escape(line)}" for line in tile.lines)
    return (
        f"<figure><a href='{link}'>{shown}</a><figcaption><a href='{link}'>{html.escape(tile.title)}</a>{lines}"
        "</figcaption></figure>"
    )


def _markdown_tile(tile: Tile) -> str:
    shown = (
        f"![{markdown_text(tile.title)}]({quote(tile.image)}) " if tile.image else f"({markdown_text(tile.missing)}) "
    )
    lines = "".join(f" · {markdown_text(line)}" for line in tile.lines)
    return f"- {shown}[{markdown_text(tile.title)}]({tile.link}){lines}"
