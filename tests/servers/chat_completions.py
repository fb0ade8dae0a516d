"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1 (real HTTP, real SSE).

It answers in vLLM's format: `chat.completion.chunk` SSE events, `stop` honoured with the stop string
left out of the text and reported in `stop_reason`, usage in a final chunk when asked, and OpenAI-style
error bodies. A request with `stream` false gets one `chat.completion` object instead (as vLLM and OpenAI
answer it: the judge and the summariser ask that way). Turns are scripted: the Nth assistant turn of a conversation (counted from the request's
messages) is `turns[N]`, or `turns(request_json)` when a callable. Special turn values script failures.
Used by the backend tests, the UI's browser test and bench/app_load.py.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, Literal

from tests.servers.json_handler import QuietJSONHandler


@dataclass(frozen=True)
class HTTPFailure:
    """Answer a turn with this HTTP status and an error body in a shape real servers send: "openai" (OpenAI
    and current vLLM: {"error": {"message", "type", "param", "code"}}), "vllm-legacy" (older vLLM and SGLang:
    {"object": "error", "message", ...}), "fastapi" ({"detail": message}: FastAPI's HTTPException, as vLLM's
    server answers a path it has no route for) or "fastapi-validation" (FastAPI's 422 for a request body it
    rejects: {"detail": [{"type", "loc", "msg", "input"}]})."""

    status: int
    message: str = "scripted failure"
    shape: Literal["openai", "vllm-legacy", "fastapi", "fastapi-validation"] = "openai"


@dataclass(frozen=True)
class StreamError:
    """Stream `text` word by word, then after `after_words` words an error event as vLLM sends one mid-stream
    (`data: {"error": {...}}`, then `data: [DONE]`)."""

    text: str
    message: str = "scripted engine failure"
    after_words: int = 2


@dataclass(frozen=True)
class CutStream:
    """Stream `text` word by word, then drop the connection after `after_words` words."""

    text: str
    after_words: int = 2


@dataclass(frozen=True)
class GarbageStream:
    """Send a non-JSON data line mid-stream."""

    text: str = "hello"


@dataclass(frozen=True)
class Refusal:
    """OpenAI's refusal form: `content` null and `refusal` set (non-streamed replies)."""

    text: str = "I'm sorry, but I can't help with that."


@dataclass(frozen=True)
class Delayed:
    """Wait `delay_s` before answering with `turn`: an overloaded or hung server."""

    delay_s: float
    turn: str | HTTPFailure = ""


Turn = str | HTTPFailure | CutStream | GarbageStream | StreamError | Refusal | Delayed


def error_body(failure: HTTPFailure) -> dict[str, Any]:
    if failure.shape == "fastapi":
        return {"detail": failure.message}
    if failure.shape == "fastapi-validation":
        return {"detail": [{"type": "missing", "loc": ["body", "messages"], "msg": failure.message, "input": None}]}
    info = {"message": failure.message, "type": "ScriptedError", "param": None, "code": failure.status}
    return {"object": "error", **info} if failure.shape == "vllm-legacy" else {"error": info}


@dataclass
class ScriptedServer:
    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    emitted_at: list[float] = field(default_factory=list)  # monotonic time each content chunk was written


_WORDS = re.compile(r"\S+\s*|\s+")


def _words(text: str) -> list[str]:
    return _WORDS.findall(text)


def _turn_index(body: dict[str, Any]) -> int:
    return sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")


def _apply_stop(text: str, stop: Sequence[str]) -> tuple[str, str | None]:
    hits = [(text.find(s), s) for s in stop if s and s in text]
    if not hits:
        return text, None
    pos, s = min(hits)
    return text[:pos], s


def _reply_words(body: dict[str, Any], text: str) -> tuple[list[str], str, str | None]:
    """The words of a reply to `body` (its stop strings and token limit applied), its finish reason, and the
    stop string that ended it, as vLLM reports them."""
    stop = body.get("stop") or []
    text, stop_hit = _apply_stop(text, [stop] if isinstance(stop, str) else stop)
    words = _words(text)
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if max_tokens is not None and len(words) > int(max_tokens):
        return words[: int(max_tokens)], "length", None
    return words, "stop", stop_hit


class _QuietServer(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops connections when dozens of clients connect at once (an eval's 64
    # episodes); real servers (uvicorn under vLLM) listen with a backlog of 2048.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hanging up is normal here
            super().handle_error(request, client_address)


@contextmanager
def scripted_chat_server(
    turns: Sequence[Turn] | Callable[[dict[str, Any]], Turn],
    *,
    token_delay_s: float = 0.0,
    model: str = "scripted-model",
    tls: ssl.SSLContext | None = None,
) -> Iterator[ScriptedServer]:
    """`tls`: a server-side context (with its certificate loaded) to serve https instead of http."""
    state = ScriptedServer(base_url="")
    lock = threading.Lock()

    def pick(body: dict[str, Any]) -> Turn:
        if callable(turns):
            return turns(body)
        index = _turn_index(body)
        if index >= len(turns):
            return "<reason>The script has no more turns.</reason><answer>out of script</answer>"
        return turns[index]

    class Handler(QuietJSONHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/v1/models"):
                self.send_json(200, {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "tests"}]})
            else:
                self.send_json(404, {"detail": "Not Found"})  # FastAPI's answer for a path with no route

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self.send_json(400, {"error": {"message": "invalid JSON body", "type": "BadRequestError", "code": 400}})
                return
            with lock:
                state.requests.append(body)
            if not self.path.endswith("/v1/chat/completions"):
                self.send_json(404, {"detail": "Not Found"})
                return
            if body.get("model") != model:
                self.send_json(
                    404,
                    {
                        "object": "error",
                        "message": f"The model `{body.get('model')}` does not exist.",
                        "type": "NotFoundError",
                        "param": None,
                        "code": 404,
                    },
                )
                return
            turn = pick(body)
            if isinstance(turn, Delayed):
                time.sleep(turn.delay_s)
                turn = turn.turn
            if isinstance(turn, HTTPFailure):
                self.send_json(turn.status, error_body(turn))
                return
            try:
                if body.get("stream"):
                    self._stream(body, turn)
                else:
                    self._complete(body, turn)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up (cancelled, or gave up on a garbage stream): nothing to clean up

        def _complete(self, body: dict[str, Any], turn: Turn) -> None:
            """A non-streamed reply: one `chat.completion` object, stop strings applied as in the stream."""
            if isinstance(turn, CutStream):
                self.connection.shutdown(2)  # hang up without an answer
                return
            if isinstance(turn, StreamError):  # unstreamed, the engine's failure is an error answer
                self.send_json(500, error_body(HTTPFailure(500, turn.message)))
                return
            if isinstance(turn, GarbageStream):
                data = b"<html>502 Bad Gateway</html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if isinstance(turn, Refusal):
                message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": turn.text}
                finish, stop_hit, words = "stop", None, []
            else:
                words, finish, stop_hit = _reply_words(body, turn)
                message = {"role": "assistant", "content": "".join(words)}
            self.send_json(
                200,
                {
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish, "stop_reason": stop_hit}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 10 + len(words)},
                },
            )

        def _sse(self, payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            line = f"data: {data}\n\n".encode()
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        def _stream(self, body: dict[str, Any], turn: Turn) -> None:
            text = turn.text if isinstance(turn, CutStream | GarbageStream | StreamError) else turn
            words, finish, stop_hit = _reply_words(body, text)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            base = {
                "id": "chatcmpl-scripted",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
            }
            self._sse(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                }
            )
            for i, word in enumerate(words):
                if isinstance(turn, CutStream) and i >= turn.after_words:
                    self.wfile.flush()
                    self.connection.shutdown(2)  # drop mid-stream, no terminating chunk
                    return
                if isinstance(turn, GarbageStream) and i == 1:
                    self._sse("{not json")
                if isinstance(turn, StreamError) and i >= turn.after_words:
                    error = {"message": turn.message, "type": "InternalServerError", "param": None, "code": 500}
                    self._sse({"error": error})
                    self._sse("[DONE]")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
                if token_delay_s:
                    time.sleep(token_delay_s)
                self._sse({**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
                with lock:
                    state.emitted_at.append(time.monotonic())
            self._sse(
                {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish, "stop_reason": stop_hit}]}
            )
            if (body.get("stream_options") or {}).get("include_usage"):
                self._sse(
                    {
                        **base,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": 10,
                            "completion_tokens": len(words),
                            "total_tokens": 10 + len(words),
                        },
                    }
                )
            self._sse("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    server = _QuietServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="scripted-chat", daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
