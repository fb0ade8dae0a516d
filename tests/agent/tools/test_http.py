"""The shared HTTP machinery against a real 127.0.0.1 server through the real httpx client.

The address guard's tests put a recording network backend *under* the guard, so they see the addresses
that were actually dialled, not the ones that were asked for."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import httpcore
import pytest

from agent.aio import run_sync
from agent.tools.http import (
    AddressGuard,
    BlockedAddressError,
    HttpClient,
    HttpPolicy,
    RateLimiter,
    ToolError,
    is_public_address,
    retry_after_s,
)
from tests.agent.tools.conftest import LOOPBACK
from tests.servers.search_providers import Reply, fake_web
from tests.servers.tls import LocalCertificates, make_test_certificates, openssl_available

FAST = HttpPolicy(timeout_s=2.0, retries=2, backoff_s=0.05, max_retry_wait_s=2.0)
GUARDED = HttpPolicy(timeout_s=2.0, retries=0, guard_addresses=True, allowed_networks=LOOPBACK, max_bytes=3_000_000)


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands in under the guard to prove which addresses were actually dialled."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.dialled: list[str] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.dialled.append(host)
        return await self.inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise AssertionError("never")

    async def sleep(self, seconds):
        await self.inner.sleep(seconds)


def call(client: HttpClient, url: str, **kw):
    return run_sync(client.request("GET", url, **kw))


def test_429_with_retry_after_is_waited_for_then_succeeds(web):
    web.script("/pages/p1", Reply(429, {"error": "slow down"}, headers=(("Retry-After", "1"),)))
    client = HttpClient("t", FAST)
    start = time.monotonic()
    response = call(client, web.url("/pages/p1"))
    assert response.status == 200 and response.attempts == 2
    assert time.monotonic() - start >= 0.95  # Retry-After: 1 was honoured, not the 0.05 s back-off


def test_retry_after_longer_than_the_cap_fails_at_once_with_the_reason(web):
    web.script(
        "/pages/p1", Reply(429, {"error": "Your account has run out of searches."}, headers=(("Retry-After", "120"),))
    )
    start = time.monotonic()
    with pytest.raises(
        ToolError, match=r"rate limited \(HTTP 429\): Your account has run out of searches.*Retry-After asks for 120 s"
    ):
        call(HttpClient("t", FAST), web.url("/pages/p1"))
    assert time.monotonic() - start < 1.0
    assert len(web.seen("/pages/p1")) == 1


def test_5xx_is_retried_a_bounded_number_of_times(web):
    web.script("/pages/p1", *[Reply(503, b"busy", content_type="text/plain")] * 5)
    with pytest.raises(ToolError, match=r"server error \(HTTP 503\) \(after 3 attempts\)"):
        call(HttpClient("t", FAST), web.url("/pages/p1"))
    assert len(web.seen("/pages/p1")) == 3


def test_a_500_then_success_recovers(web):
    web.script("/pages/p2", Reply(500, {"error": "boom"}))
    assert call(HttpClient("t", FAST), web.url("/pages/p2")).status == 200


def test_a_server_that_never_answers_times_out_in_bounded_time(web):
    web.script("/pages/p1", Reply(200, b"late", delay_s=3.0))
    start = time.monotonic()
    with pytest.raises(ToolError, match=r"no complete response within 0.5 s"):
        call(HttpClient("t", HttpPolicy(timeout_s=0.5, retries=0)), web.url("/pages/p1"))
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize("guarded", [False, True])
def test_a_page_dripping_one_byte_a_second_is_cut_off_at_the_deadline(web, guarded):
    start = time.monotonic()
    policy = HttpPolicy(timeout_s=1.5, retries=0, guard_addresses=guarded, allowed_networks=LOOPBACK)
    with pytest.raises(ToolError, match="timed out"):
        call(HttpClient("t", policy), web.url("/pages/drip"))
    assert time.monotonic() - start < 2.5  # httpx's read timeout alone would never fire here


@pytest.mark.parametrize("page", ["huge", "huge-declared"])
def test_a_50_mb_page_is_refused_at_the_size_cap(web, page):
    start = time.monotonic()
    with pytest.raises(ToolError, match=r"(over|exceeded) the 3.0 MB cap"):
        call(HttpClient("t", GUARDED), web.url(f"/pages/{page}"))
    assert time.monotonic() - start < 3.0


@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/",
        "http://192.168.1.1:8080/",
    ],
)
def test_redirect_to_a_private_address_is_refused_without_connecting(web, target):
    recorder = RecordingBackend()
    client = HttpClient("t", GUARDED, backend=recorder)
    with pytest.raises(BlockedAddressError, match="refused to fetch .*(private|link-local|non-public) address"):
        call(client, web.url("/pages/redirect") + "?to=" + target)
    # The first hop (the loopback test server, explicitly allowed) was dialled; the private target never was.
    assert recorder.dialled == ["127.0.0.1"]


def test_a_host_name_that_resolves_to_loopback_is_refused_unless_allowed(web):
    port = web.base_url.rsplit(":", 1)[1]
    strict = HttpClient("t", HttpPolicy(timeout_s=2.0, retries=0, guard_addresses=True))
    with pytest.raises(BlockedAddressError, match="localhost: it resolves to a loopback address"):
        call(strict, f"http://localhost:{port}/pages/p1")
    assert call(HttpClient("t", GUARDED), f"http://localhost:{port}/pages/p1").status == 200


def test_redirect_to_a_non_http_scheme_is_refused(web):
    with pytest.raises(ToolError, match="refused file URL"):
        call(HttpClient("t", GUARDED), web.url("/pages/redirect") + "?to=file:///etc/passwd")


def test_redirects_are_followed_up_to_the_limit(web):
    assert call(HttpClient("t", GUARDED), web.url("/pages/redirect") + "?to=/pages/p3").url.endswith("/pages/p3")
    loop = web.url("/pages/redirect") + "?to=" + web.url("/pages/redirect?to=/pages/redirect")
    with pytest.raises(ToolError, match="more than 1 redirects"):
        call(HttpClient("t", HttpPolicy(timeout_s=2.0, retries=0, max_redirects=1)), loop)


def test_invalid_json_is_a_clear_error(web):
    web.script("/pages/p1", Reply(200, b"<html>not json</html>", content_type="text/html"))
    response = call(HttpClient("t", FAST), web.url("/pages/p1"))
    with pytest.raises(ToolError, match="is not valid JSON .*HTTP 200, text/html"):
        response.json()


@pytest.mark.parametrize("policy", [HttpPolicy(timeout_s=2.0, retries=0), GUARDED])
def test_connection_refused_is_an_error_not_an_exception(policy):
    with pytest.raises(ToolError, match="connection failed .*ConnectError"):
        call(HttpClient("t", policy), "http://127.0.0.1:9/")


def test_a_host_name_is_resolved_once_and_only_the_checked_address_is_dialled(web):
    port = web.base_url.rsplit(":", 1)[1]
    recorder = RecordingBackend()
    client = HttpClient("t", GUARDED, backend=recorder)
    assert call(client, f"http://localhost:{port}/pages/p1").status == 200
    # The pool dialled the address the guard resolved and checked, never the name: no second DNS answer
    # (a rebinding one) can reach the connection.
    assert recorder.dialled and all(ipaddress.ip_address(host).is_loopback for host in recorder.dialled)


def test_a_refused_address_is_never_dialled_even_as_the_first_hop():
    recorder = RecordingBackend()
    strict = HttpClient("t", HttpPolicy(timeout_s=2.0, retries=0, guard_addresses=True), backend=recorder)
    with pytest.raises(BlockedAddressError, match="loopback address 127.0.0.1"):
        call(strict, "http://127.0.0.1:9/")
    assert recorder.dialled == []


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificates:
    if not openssl_available():
        pytest.skip("the openssl command is needed to make a test certificate authority")
    return make_test_certificates(tmp_path_factory.mktemp("tls"))


def test_tls_through_the_guard_verifies_the_host_name_while_dialling_the_checked_address(certificates):
    with fake_web(tls=certificates.server_context()) as web:
        recorder = RecordingBackend()
        client = HttpClient("t", GUARDED, backend=recorder, ssl_context=certificates.client_context())
        response = call(client, web.url("/pages/p1"))  # https://localhost:PORT, certificate for localhost
        assert response.status == 200 and "Page 1" in response.text()
        assert recorder.dialled and all(ipaddress.ip_address(host).is_loopback for host in recorder.dialled)
        by_address = web.url("/pages/p1").replace("localhost", "127.0.0.1")
        with pytest.raises(ToolError, match="connection failed .*(CERTIFICATE_VERIFY_FAILED|match)"):
            call(client, by_address)  # same server, but the certificate does not name 127.0.0.1
        untrusting = HttpClient("t", GUARDED)  # the shared context: public CAs only
        with pytest.raises(ToolError, match="connection failed .*CERTIFICATE_VERIFY_FAILED"):
            call(untrusting, web.url("/pages/p1"))


def test_a_connection_cut_mid_body_is_a_connection_failure_through_the_guarded_transport():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_half() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1000\r\n\r\n<html>half")
        conn.close()

    thread = threading.Thread(target=answer_half, daemon=True)
    thread.start()
    try:
        with pytest.raises(ToolError, match=r"connection failed \((RemoteProtocolError|ReadError)"):
            call(HttpClient("t", GUARDED), f"http://127.0.0.1:{port}/")
    finally:
        thread.join(timeout=5)
        server.close()


def test_rate_limiter_spaces_requests():
    limiter = RateLimiter(20.0)

    async def burst():
        start = time.monotonic()
        for _ in range(5):
            await limiter.wait()
        return time.monotonic() - start

    assert 0.18 <= run_sync(burst()) < 0.5  # 4 gaps of 50 ms


@pytest.mark.parametrize(
    "address,public",
    [
        ("8.8.8.8", True),
        ("10.0.0.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:10.0.0.1", False),
        ("2606:4700::1111", True),
        ("0.0.0.0", False),
    ],
)
def test_public_address_classification(address, public):
    assert is_public_address(ipaddress.ip_address(address)) is public


def test_allowed_networks_are_the_only_exception():
    guard = AddressGuard(["127.0.0.0/8"])
    assert guard.refusal("127.0.0.1") is None
    assert guard.refusal("10.0.0.1") == "private address 10.0.0.1"


def test_retry_after_parses_seconds_and_http_dates():
    assert retry_after_s("3") == 3.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert retry_after_s("soon") is None and retry_after_s(None) is None


def test_policy_rejects_bad_limits():
    with pytest.raises(ValueError):
        HttpPolicy(timeout_s=0)
    with pytest.raises(ValueError):
        HttpPolicy(allowed_networks=("not-a-network",))
