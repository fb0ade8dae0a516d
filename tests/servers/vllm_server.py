"""A scripted vLLM server on 127.0.0.1 speaking the token-in/token-out endpoints TRL's VLLMClient uses.

- `GET /health`, `GET /v1/models` (vLLM's model card list);
- `POST /v1/chat/completions/render`: an image's processed features (here an opaque dict naming the request);
- `POST /inference/v1/generate` (token ids + features, `sampling_params`): one choice with `token_ids` and
  chat-style `logprobs.content` entries (`"token": "token_id:<id>"`), `finish_reason` `stop` or `length`;
- `POST /v1/completions` with a token-id prompt: `token_ids`, `prompt_token_ids` and completion-style logprobs
  (`tokens`, `token_logprobs`, `top_logprobs`).

The reply is scripted: the Nth assistant turn of a conversation (counted from the assistant headers in the
decoded prompt) is `turns[N]`, tokenised with the given tokenizer and cut after the first stop string, as vLLM
stops there (`include_stop_str_in_output` keeps the string). A status code in `fail_with` answers every
generate request with that HTTP error (vLLM's error body).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from tests.servers.json_handler import QuietJSONHandler

ASSISTANT_HEADER = "<|im_start|>assistant\n"


@dataclass
class VLLMServer:
    base_url: str
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_with: int | None = None


def _logprob(i: int) -> float:
    return -0.25 - 0.01 * i


@contextmanager
def vllm_server(tokenizer: Any, turns: Sequence[str], *, model: str = "tiny-policy") -> Iterator[VLLMServer]:
    state = VLLMServer("")

    def reply_ids(prompt_ids: list[int], params: dict[str, Any]) -> tuple[list[int], str]:
        prompt = tokenizer.decode(prompt_ids)
        index = max(prompt.count(ASSISTANT_HEADER) - 1, 0)
        text = turns[min(index, len(turns) - 1)]
        for stop in params.get("stop") or []:
            at = text.find(stop)
            if at >= 0:
                text = text[: at + len(stop)]
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        limit = int(params.get("max_tokens", 16))
        return ids[:limit], "length" if len(ids) > limit else "stop"

    class Handler(QuietJSONHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/v1/models":
                self.send_json(
                    200, {"object": "list", "data": [{"id": model, "object": "model", "max_model_len": 32768}]}
                )
            else:
                self.send_json(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            state.requests.append((self.path, body))
            if self.path == "/v1/chat/completions/render":
                self.send_json(200, {"token_ids": [], "features": {"mm_hashes": [f"image-{len(state.requests)}"]}})
                return
            if state.fail_with is not None:
                self.send_json(
                    state.fail_with,
                    {"error": {"message": "scripted failure", "type": "InternalServerError", "code": state.fail_with}},
                )
                return
            if self.path == "/inference/v1/generate":
                ids, finish = reply_ids(body["token_ids"], body["sampling_params"])
                content = [
                    {"token": f"token_id:{t}", "logprob": _logprob(i), "bytes": None, "top_logprobs": []}
                    for i, t in enumerate(ids)
                ]
                choice = {"index": 0, "token_ids": ids, "logprobs": {"content": content}, "finish_reason": finish}
                self.send_json(200, {"request_id": body.get("request_id"), "choices": [choice], "usage": {}})
            elif self.path == "/v1/completions":
                prompt = body["prompt"][0]
                ids, finish = reply_ids(prompt, body)
                tokens = [f"token_id:{t}" for t in ids]
                logprobs = {
                    "text_offset": list(range(len(ids))),
                    "token_logprobs": [_logprob(i) for i in range(len(ids))],
                    "tokens": tokens,
                    "top_logprobs": [{tok: _logprob(i)} for i, tok in enumerate(tokens)],
                }
                choice = {
                    "index": 0,
                    "text": tokenizer.decode(ids),
                    "token_ids": ids,
                    "prompt_token_ids": prompt,
                    "logprobs": logprobs,
                    "finish_reason": finish,
                }
                self.send_json(200, {"id": "cmpl-1", "object": "text_completion", "model": model, "choices": [choice]})
            else:
                self.send_json(404, {"detail": "Not Found"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
