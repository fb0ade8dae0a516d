"""Paced reads: a model stream read under a FramePace takes its tokens once per frame, not once per token,
loses none of them, and is never held back while the consumer idles."""

import shutil
import ssl
import subprocess
import threading
import time

import httpcore
import pytest

from agent.models.openai_backend import OpenAIBackend
from agent.models.read_pacing import FramePace, paced_by
from tests.servers.chat_completions import scripted_chat_server

WORDS = 40
TEXT = "<reason>" + " ".join(f"w{i}" for i in range(WORDS)) + "</reason><answer>x</answer>"


def test_an_idle_pace_reads_at_once_and_a_due_frame_is_read_just_before():
    pace = FramePace(0.04, lead_s=0.005)
    assert pace.read_at(10.0) == 10.0
    pace.frame_due(10.04)
    assert pace.read_at(10.0) == pytest.approx(10.035)  # just before the due frame
    assert pace.read_at(10.036) == pytest.approx(10.075)  # too late for it: just before the one after
    assert pace.read_at(10.2) == pytest.approx(10.235)  # a late consumer: frames assumed every interval
    pace.idle()
    assert pace.read_at(10.2) == 10.2


def test_going_idle_cuts_a_readers_wait_short():
    pace = FramePace(5.0)
    pace.frame_due(time.monotonic() + 5.0)
    reader = threading.Thread(target=pace.wait_to_read)
    start = time.monotonic()
    reader.start()
    time.sleep(0.05)
    pace.idle()
    reader.join(2.0)
    assert not reader.is_alive() and time.monotonic() - start < 1.0


@pytest.fixture
def counted_reads(monkeypatch):
    """Counts the socket reads httpcore makes (its own SyncStream, under the paced wrapper)."""
    reads = []
    original = httpcore._backends.sync.SyncStream.read

    def read(self, max_bytes, timeout=None):
        reads.append(time.monotonic())
        return original(self, max_bytes, timeout)

    monkeypatch.setattr(httpcore._backends.sync.SyncStream, "read", read)
    return reads


def _stream(backend, pace=None):
    deltas = []

    def consume():
        for delta in backend.stream([{"role": "user", "content": "q"}], max_new_tokens=100, stop=[]):
            deltas.append(delta.text)

    if pace is None:
        consume()
    else:
        with paced_by(pace):
            consume()
    return "".join(deltas)


def test_a_paced_stream_is_read_once_per_frame_and_loses_no_token(counted_reads):
    with scripted_chat_server([TEXT], token_delay_s=0.01) as server:  # about 0.45 s of tokens
        backend = OpenAIBackend("scripted-model", server.base_url)
        assert _stream(backend) == TEXT
        unpaced = len(counted_reads)
        counted_reads.clear()
        pace = FramePace(0.08)
        pace.frame_due(time.monotonic() + 0.08)  # a consumer showing a frame every 80 ms from now on
        assert _stream(backend, pace) == TEXT
        paced = len(counted_reads)
        backend.close()
    assert unpaced >= WORDS / 2  # unpaced, tokens come one read at a time (some may coalesce)
    assert paced <= 15 < unpaced  # about one read per 80 ms frame, plus the response's head


def test_a_stream_under_an_idle_pace_is_not_delayed():
    with scripted_chat_server([TEXT], token_delay_s=0.0) as server:
        backend = OpenAIBackend("scripted-model", server.base_url)
        start = time.monotonic()
        assert _stream(backend, FramePace(5.0)) == TEXT  # never told of a frame: idle
        backend.close()
    assert time.monotonic() - start < 2.0


@pytest.fixture
def tls_pair(tmp_path):
    """A self-signed certificate for 127.0.0.1: (server context, client context trusting it)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


def test_a_tls_stream_is_paced_too(counted_reads, tls_pair, monkeypatch):
    server_context, client_context = tls_pair
    monkeypatch.setattr("agent.models.openai_backend.shared_ssl_context", lambda: client_context)
    with scripted_chat_server([TEXT], token_delay_s=0.01, tls=server_context) as server:
        assert server.base_url.startswith("https://")
        backend = OpenAIBackend("scripted-model", server.base_url)
        pace = FramePace(0.08)
        pace.frame_due(time.monotonic() + 0.08)
        assert _stream(backend, pace) == TEXT
        backend.close()
    # A TLS read returns one record (one token) at a time, so count wake-ups: reads after a pause.
    wakeups = sum(1 for before, after in zip(counted_reads, counted_reads[1:], strict=False) if after - before > 0.005)
    assert wakeups <= 15  # about one per 80 ms frame over 0.45 s, not one per token
