"""Report pages: one list of blocks rendered both as a self-contained HTML page and as its Markdown twin.

A block is a tuple: ("h2" | "h3" | "p", text), ("warning", text), ("table", DataFrame),
("image", file name, caption) or ("links", [(text, file name), ...]). Reports build the list once
and `render` writes both pages from it, so the two never disagree. Pages use no network fonts or
scripts: only their own images beside them.

Labels, paths and values come from users and from files others made, so every cell and text is
escaped (HTML entities; in Markdown also backslash-escaped punctuation, one line per cell) and
every link target is URL-quoted.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pandas as pd

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:70rem;padding:0
1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem
.5rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
.warning{background:#fff3cd;border:1px solid #e0c36c;padding:.5rem 1rem}.muted{color:#777}
"""

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]#!|~$])")


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
    """An HTML table of a DataFrame, floats rounded, text escaped."""
    return frame.to_html(index=False, escape=True, border=0, float_format=float_format.format, na_rep="")


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
    if kind == "links":
        return (
            "<p>"
            + " · ".join(f"<a href='{html.escape(quote(href))}'>{html.escape(text)}</a>" for text, href in content[0])
            + "</p>"
        )
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
    if kind == "links":
        return " · ".join(f"[{markdown_text(text)}]({quote(href)})" for text, href in content[0])
    return {"h2": "## ", "h3": "### "}.get(kind, "") + markdown_text(content[0])
