"""Showing untrusted text (model output, web results, stored traces) as text, never as markup.

Two renderers display our strings: the Chatbot (Markdown, then sanitised HTML) and `gr.HTML` (raw HTML).
Every string that came from a model, a web page or a trace file goes through one of these functions, so
no tag, event handler, Markdown link or LaTeX from outside ever becomes live in the page. The tools also
clean their results (agent/tools/sanitise.py); this layer does not rely on that, because stored traces
can come from imports that never went through our tools.
"""

from __future__ import annotations

import html
import re

from agent.tools.sanitise import safe_url

# Markdown's backslash-escapable ASCII punctuation, minus the HTML-significant characters, which become
# entities instead (a backslash before "<" is not enough for every Markdown renderer).
_MD_PUNCT = "\\`*_{}[]()#+-.!|~=$:"
_HTML_CHARS = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
# One table, applied in C by str.translate: the live view re-escapes a streaming turn on every frame.
_MD_TABLE = str.maketrans({**{ch: "\\" + ch for ch in _MD_PUNCT}, **_HTML_CHARS})


def md_text(value: object) -> str:
    """Markdown source that renders exactly as the given text: no emphasis, links, headings, HTML or maths.

    Newlines are kept (the Chatbot renders single line breaks). ":" is escaped so that bare "javascript:"
    or "https:" text is never auto-linked by the Markdown renderer.
    """
    return ("" if value is None else str(value)).translate(_MD_TABLE)


def md_code(value: object) -> str:
    """An inline code span that shows the given text literally (paths, commands).

    Inside a code span Markdown takes backslashes literally, so `md_text`'s escapes would show; instead the span is
    fenced by more backticks than the text's longest run of them, with spaces where the text touches a fence. Line
    breaks become spaces, as a code span renders them anyway.
    """
    text = ("" if value is None else str(value)).replace("\r", " ").replace("\n", " ")
    fence = code_fence(text)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def code_fence(text: str, *, shortest: int = 1) -> str:
    """Backticks to fence `text` as code: more than its longest run of them, which then cannot close it early."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    return "`" * max(shortest, longest + 1)


def html_text(value: object) -> str:
    """HTML that displays the given text literally (for gr.HTML)."""
    return html.escape("" if value is None else str(value), quote=True)


def http_url(value: object) -> str:
    """The URL if it is an absolute http(s) URL with a host and no credentials, whitespace, control or
    quoting characters, else "". The tools' rule plus the characters that matter inside an HTML attribute."""
    url = safe_url(value)
    if any(ch in "\"'<>`\\" for ch in url):
        return ""
    return url


def html_link(url: object, label: object) -> str:
    """An external link that opens in a new tab without access to this page, or plain text if the URL is unsafe."""
    safe = http_url(url)
    if not safe:
        return html_text(label)
    return (
        f'<a href="{html.escape(safe, quote=True)}" target="_blank" rel="noopener noreferrer nofollow">'
        f"{html_text(label)}</a>"
    )


def truncate(text: str, limit: int) -> str:
    text = " ".join(text.split()) if "\n" not in text else text
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
