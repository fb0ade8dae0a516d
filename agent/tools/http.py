"""Shared HTTP machinery for every web tool: one bounded, polite, SSRF-safe way to make a request.

What every call gets (DESIGN.md §3.4):
- a hard deadline per attempt covering connect, headers and body, so a server that drips one byte a
  second cannot hold a call past `timeout_s` (httpx's own read timeout resets on every byte);
- bounded retries on 429/5xx/connection errors that honour Retry-After (seconds or HTTP date), but never
  wait longer than `max_retry_wait_s`; a longer Retry-After fails at once with a clear message;
- a response size cap, checked against Content-Length first and then while streaming the decoded body
  (so a gzip bomb is capped too);
- redirects followed by hand, at most `max_redirects`, each hop re-checked (scheme and address);
- with `guard_addresses`, a refusal of private, loopback, link-local, multicast and reserved addresses.
  The check runs inside the connection layer *after DNS resolution*, on the address actually dialled, so
  it covers every redirect hop and DNS rebinding; a refused address is never connected to. It is built on
  httpx's and httpcore's public API: `GuardedTransport` (an `httpx.AsyncBaseTransport`) over an
  `httpcore.AsyncConnectionPool` whose `network_backend` is `GuardedNetworkBackend`;
- a per-client rate limit (requests per second).

Not here: parsing. Providers turn `HttpResponse` into results; `ToolError` carries a one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from agent.tls import shared_ssl_context
from agent.tools.sanitise import redact_url

USER_AGENT = "deepmmsearch-studio/0.1 (+research agent; respects robots of its providers)"
_REDIRECTS = (301, 302, 303, 307, 308)
_RETRYABLE = (429, 500, 502, 503, 504)


class ToolError(Exception):
    """A tool call failed; `str(error)` is one line that says what happened (no secrets in it)."""

    def __init__(self, reason: str, *, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class BlockedAddressError(ToolError):
    """The destination resolves to an address the policy refuses (private, loopback, link-local...)."""


@dataclass(frozen=True)
class HttpPolicy:
    """Limits for one client. Defaults suit hosted search APIs; page fetching tightens them."""

    timeout_s: float = 15.0  # per attempt, whole exchange (connect + headers + body)
    connect_timeout_s: float = 5.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    retries: int = 2  # extra attempts after the first, on 429/5xx/connection errors
    max_retry_wait_s: float = 10.0
    backoff_s: float = 0.5  # first back-off when the server gives no Retry-After; doubles each retry
    guard_addresses: bool = False  # True for page fetches: refuse private/loopback/link-local targets
    allowed_networks: tuple[str, ...] = ()  # exceptions to the guard, e.g. ("127.0.0.0/8",) in tests
    rate_per_s: float = 0.0  # 0 = unlimited
    user_agent: str = USER_AGENT

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("timeouts must be > 0")
        if self.max_bytes <= 0 or self.max_redirects < 0 or self.retries < 0 or self.max_retry_wait_s < 0:
            raise ValueError("max_bytes must be > 0; max_redirects, retries and max_retry_wait_s >= 0")
        for net in self.allowed_networks:
            ipaddress.ip_network(net, strict=False)  # raises ValueError on a typo, at start-up


@dataclass(frozen=True)
class HttpResponse:
    url: str  # final URL after redirects
    status: int
    headers: Mapping[str, str] = field(repr=False)  # lower-cased names
    body: bytes = field(repr=False)
    elapsed_s: float = 0.0
    attempts: int = 1

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for part in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"').lower()
        return None

    def text(self) -> str:
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # an unknown charset name from the server
            return self.body.decode("utf-8", errors="replace")

    def json(self, *, what: str = "response") -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            excerpt = self.body[:80].decode("utf-8", errors="replace").replace("\n", " ")
            raise ToolError(
                f"{what} is not valid JSON (HTTP {self.status}, {self.content_type or 'no content type'}): {excerpt!r}"
            ) from None


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for globally routable unicast addresses; False for private, loopback, link-local and the like."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback or ip.is_link_local
    )


class AddressGuard:
    """Decides which resolved addresses may be dialled."""

    def __init__(self, allowed_networks: Iterable[str] = ()):
        self.allowed = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)

    def refusal(self, ip_text: str) -> str | None:
        ip = ipaddress.ip_address(ip_text.split("%")[0])
        if any(ip in net for net in self.allowed):
            return None
        if is_public_address(ip):
            return None
        kind = (
            "loopback"
            if ip.is_loopback
            else "link-local"
            if ip.is_link_local
            else "private"
            if ip.is_private
            else "non-public"
        )
        return f"{kind} address {ip}"

    async def resolve(self, host: str, port: int) -> list[str]:
        """Addresses for `host` that may be dialled; raises BlockedAddressError if any is refused.

        Refusing when *any* address is private (not just the first) stops a name that mixes public and
        private records from slipping through on a retry to the second address.
        """
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
            addresses = [str(ip)]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise ToolError(f"cannot resolve host {host!r}: {exc.strerror or exc}") from None
            addresses = list(dict.fromkeys(info[4][0] for info in infos))
        for address in addresses:
            why = self.refusal(address)
            if why is not None:
                raise BlockedAddressError(
                    f"refused to fetch {host}: it resolves to a {why}; set --allow-private-fetch (ALLOW_PRIVATE_FETCH=1) to allow it"
                )
        return addresses


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that resolves the host itself, checks every address, then dials the IP.

    The pool dials only what this returns, so the address checked is the address connected to: there is no
    second DNS lookup for a rebinding answer to slip into. TLS still verifies the certificate against the
    original host name: httpcore passes the origin's host to start_tls, apart from the address dialled.
    """

    def __init__(self, guard: AddressGuard, inner: httpcore.AsyncNetworkBackend | None = None):
        self.guard = guard
        self.inner = inner or httpcore.AnyIOBackend()  # what httpx uses under asyncio

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None, socket_options=None
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.guard.resolve(host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise BlockedAddressError("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


# httpcore's errors as httpx's, most specific first, so callers catch httpx.TransportError as with any client.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc) or type(exc).__name__) from exc
        raise  # ours (BlockedAddressError) and anything else pass through unchanged


class _BodyStream(httpx.AsyncByteStream):
    """An httpcore response body as an httpx stream, its errors mapped too (a reset mid-body is a ReadError)."""

    def __init__(self, body: httpcore.Response):
        self.body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for chunk in self.body.aiter_stream():
                yield chunk

    async def aclose(self) -> None:
        await self.body.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore connection pool that dials through `GuardedNetworkBackend`.

    Why our own transport: httpx's AsyncHTTPTransport takes no network backend, and httpcore's pool does.
    The request and response are carried across with public types only (httpx.Request -> httpcore.Request,
    httpcore.Response -> httpx.Response), as httpx's own transport does. No proxy is ever used: a proxy
    would dial on our behalf, past the guard.
    """

    def __init__(
        self,
        guard: AddressGuard,
        *,
        ssl_context: ssl.SSLContext,
        backend: httpcore.AsyncNetworkBackend | None = None,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0),
    ):
        self.network_backend = GuardedNetworkBackend(guard, backend)
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            retries=0,  # HttpClient retries, with its own back-off and deadline
            network_backend=self.network_backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,  # carries httpx's timeouts to the pool
        )
        with _as_httpx_errors():
            response = await self.pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_BodyStream(response),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


class RateLimiter:
    """At most `rate_per_s` starts per second, spaced evenly. Single event loop, so no lock is needed:
    the slot is claimed before the first await."""

    def __init__(self, rate_per_s: float):
        self.interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if self.interval <= 0:
            return
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None when absent/garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def provider_message(body: bytes) -> str:
    """A provider's own error text from a JSON error body, for clearer failures (SerpAPI `error`, Google's,
    OpenAI's and vLLM's `error.message`, Brave `error.detail`, Serper's and older vLLM's and SGLang's
    `message`, FastAPI's `detail`: a string, or its request validation errors as a list)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(data, dict):
        return ""
    err = data.get("error")
    if isinstance(err, str):
        return err[:300]
    if isinstance(err, dict):
        for key in ("message", "detail", "code"):
            if isinstance(err.get(key), str):
                return err[key][:300]
    for key in ("message", "detail"):
        if isinstance(data.get(key), str):
            return data[key][:300]
    if isinstance(data.get("detail"), list):  # FastAPI's 422: [{"loc": ["body", "messages"], "msg": "..."}, ...]
        problems = [
            f"{'.'.join(str(part) for part in item.get('loc') or ())}: {item.get('msg')}".lstrip(": ")
            for item in data["detail"]
            if isinstance(item, dict) and item.get("msg")
        ]
        return "; ".join(problems)[:300]
    return ""


class HttpClient:
    """One provider's HTTP client: lazily creates its httpx.AsyncClient on the running event loop.

    Tools run on agent.aio's single background loop, so the client and its pool live as long as the tool.
    If called from another loop (a test's asyncio.run), a fresh client is made for that loop, because an
    httpx client cannot move between loops.
    """

    def __init__(
        self,
        name: str,
        policy: HttpPolicy = HttpPolicy(),
        *,
        backend: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ):
        """`backend` dials under the guard (tests pass one that records what was dialled; with it, even an
        unguarded client goes through GuardedTransport, allowing every address). `ssl_context` defaults to
        the process's shared verified context (agent/tls.py); tests pass one that trusts their own CA."""
        self.name = name
        self.policy = policy
        self.limiter = RateLimiter(policy.rate_per_s)
        self._backend = backend
        self._ssl_context = ssl_context
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.requests_sent = 0  # attempts that reached the network layer, for tests and benchmarks

    def _get_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            p = self.policy
            context = self._ssl_context or shared_ssl_context()
            transport: httpx.AsyncBaseTransport
            if p.guard_addresses or self._backend is not None:
                guard = AddressGuard(p.allowed_networks) if p.guard_addresses else AddressGuard(["0.0.0.0/0", "::/0"])
                transport = GuardedTransport(guard, ssl_context=context, backend=self._backend)
            else:
                transport = httpx.AsyncHTTPTransport(retries=0, verify=context)
            self._client = httpx.AsyncClient(
                transport=transport,
                follow_redirects=False,  # we follow by hand so every hop is re-checked
                # An explicit transport already makes httpx ignore proxy variables; guarded clients also skip
                # .netrc and the rest of the environment, since nothing but the guard decides where they go.
                trust_env=not p.guard_addresses,
                timeout=httpx.Timeout(p.timeout_s, connect=p.connect_timeout_s),
                headers={"User-Agent": p.user_agent},
            )
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        what: str | None = None,
    ) -> HttpResponse:
        """Send with retries. Returns the final response for any status except retryable ones that kept
        failing (429/5xx), which raise ToolError; the caller reads 4xx bodies for the provider's error."""
        what = what or self.name
        p = self.policy
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.wait()
            try:
                async with asyncio.timeout(p.timeout_s):
                    response = await self._follow(
                        method, url, params=params, json_body=json_body, headers=headers, what=what
                    )
            except TimeoutError:
                failure = ToolError(f"{what}: no complete response within {p.timeout_s:g} s (timed out)")
                wait = None
            except ToolError:  # refused address, size cap, bad scheme: retrying cannot help
                raise
            except httpx.TransportError as exc:
                failure = ToolError(f"{what}: connection failed ({type(exc).__name__}: {exc or 'no detail'})")
                wait = None
            else:
                if response.status not in _RETRYABLE:
                    return HttpResponse(
                        response.url,
                        response.status,
                        response.headers,
                        response.body,
                        time.monotonic() - start,
                        attempt,
                    )
                message = provider_message(response.body)
                label = (
                    "rate limited (HTTP 429)" if response.status == 429 else f"server error (HTTP {response.status})"
                )
                failure = ToolError(f"{what}: {label}{': ' + message if message else ''}", status=response.status)
                wait = retry_after_s(response.headers.get("retry-after"))
                if wait is not None and wait > p.max_retry_wait_s:
                    raise ToolError(
                        f"{failure.reason}; Retry-After asks for {wait:.0f} s, more than the {p.max_retry_wait_s:g} s we wait: try again later",
                        status=response.status,
                    )
            if attempt > p.retries:
                suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise ToolError(failure.reason + suffix, status=failure.status)
            if wait is None:
                wait = min(p.backoff_s * (2 ** (attempt - 1)), p.max_retry_wait_s)
            await asyncio.sleep(wait)

    async def _follow(self, method: str, url: str, *, params, json_body, headers, what: str) -> HttpResponse:
        client = self._get_client()
        p = self.policy
        current = url
        for hop in range(p.max_redirects + 1):
            _check_scheme(current, what)
            request = client.build_request(
                method, current, params=params if hop == 0 else None, json=json_body, headers=headers
            )
            self.requests_sent += 1
            response = await client.send(request, stream=True)
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    target = urljoin(str(response.url), response.headers["location"])
                    if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                        method, json_body = "GET", None
                    current = target
                    continue
                body = await _read_capped(response, p.max_bytes, what)
                return HttpResponse(
                    str(response.url), response.status_code, {k.lower(): v for k, v in response.headers.items()}, body
                )
            finally:
                await response.aclose()
        raise ToolError(f"{what}: more than {p.max_redirects} redirects (last to {redact_url(current)})")


def _check_scheme(url: str, what: str) -> None:
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        raise ToolError(f"{what}: malformed URL") from None
    if scheme not in ("http", "https"):
        raise ToolError(
            f"{what}: refused {scheme or 'scheme-less'} URL {redact_url(url)[:200]!r}: only http and https are fetched"
        )


async def _read_capped(response: httpx.Response, max_bytes: int, what: str) -> bytes:
    length = response.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise ToolError(f"{what}: response is {int(length) / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB cap")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise ToolError(f"{what}: response exceeded the {max_bytes / 1e6:.1f} MB cap; stopped reading")
        chunks.append(chunk)
    return b"".join(chunks)


async def request_json(
    client: HttpClient,
    method: str,
    url: str,
    *,
    what: str,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """A provider API call: JSON back, or ToolError with the HTTP status and the provider's own message."""
    response = await client.request(method, url, params=params, json_body=json_body, headers=headers, what=what)
    if response.status >= 400:
        detail = provider_message(response.body)
        hint = " (check the API key)" if response.status in (401, 403) else ""
        raise ToolError(
            f"{what}: HTTP {response.status}{hint}{': ' + detail if detail else ''}", status=response.status
        )
    return response.json(what=f"{what} response")
