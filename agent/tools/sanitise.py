"""Make untrusted web strings safe to show people and models: plain text only, http(s) links only.

Everything a provider or a page gives us (titles, snippets, page text, links, thumbnails) passes through
here before it enters a ToolResult, so hostile markup never reaches the summariser, the trace store or
the UI, whichever provider it came from. Providers do return markup: Cloud Vision page titles carry <b>,
SearXNG snippets may carry entities, and a hostile page can put "<script>" into any text field.
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import urlsplit

from agent.events import ResultItem

# Anything that looks like a tag. Bounded length so a stray "<" in prose cannot swallow a whole page.
_TAG = re.compile(r"<\s*/?\s*[a-zA-Z!?][^<>]{0,2000}>")
# Script/style blocks whose *content* must go too (stripping only the tags would keep the JavaScript).
_BLOCK = re.compile(
    r"<\s*(script|style|noscript|template|iframe|object|svg)\b.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL
)
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")


def clean_text(value: object, *, max_chars: int | None = None, keep_newlines: bool = False) -> str:
    """Plain text from an untrusted string: markup and control characters removed, entities decoded.

    Tags are removed before *and* after decoding entities, so "&lt;script&gt;" cannot come back as a tag.
    """
    if value is None:
        return ""
    text = str(value)
    for _ in range(2):
        text = _BLOCK.sub(" ", text)
        text = _TAG.sub(" ", text)
        text = html.unescape(text)
    text = _BLOCK.sub(" ", text)
    text = _TAG.sub(" ", text)
    # A lone "<" or ">" left in prose is harmless as text, but we also never want a renderer that forgot
    # to escape to see a tag opener, so angle brackets become their look-alike-free fullwidth forms.
    text = text.replace("<", "‹").replace(">", "›")
    if not text.replace("\n", "").replace("\t", "").isprintable():  # the common case skips the per-character pass
        text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    if keep_newlines:
        lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r", "\n").split("\n")]
        text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    else:
        text = _SPACES.sub(" ", text.replace("\n", " ").replace("\t", " ")).strip()
        text = re.sub(r" {2,}", " ", text)
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return text


def safe_url(value: object) -> str:
    """The URL if it is an absolute http(s) URL without credentials or whitespace, else "".

    A provider (or a hostile page) could hand us `javascript:` or `data:` links; the UI renders links and
    thumbnails, so only plain web URLs survive.
    """
    if not isinstance(value, str):
        return ""
    url = value.strip()
    if not url or len(url) > 4096 or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return ""
    return url


def site_of(url: str) -> str:
    """The host of a URL without "www.", for the result card's source line."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host[4:] if host.startswith("www.") else host


def result_item(
    *,
    title: object,
    url: object = "",
    snippet: object = "",
    thumbnail: object = "",
    source: object = "",
    page_text: str = "",
) -> ResultItem:
    """A ResultItem from raw provider fields, every field sanitised. Missing titles fall back to the site."""
    link = safe_url(url)
    clean_title = clean_text(title, max_chars=300) or site_of(link) or "(untitled)"
    return ResultItem(
        title=clean_title,
        snippet=clean_text(snippet, max_chars=1000),
        url=link,
        thumbnail_url=safe_url(thumbnail),
        source=clean_text(source, max_chars=100) or site_of(link),
        page_text=clean_text(page_text, keep_newlines=True) if page_text else "",
    )


def redact_url(url: str) -> str:
    """scheme://host/path of a URL: query strings can carry API keys (SerpAPI, Cloud Vision), so error
    messages never include them."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(malformed URL)"
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
