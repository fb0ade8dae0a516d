"""Rollout turns generated on a vLLM server (`--vllm-server URL`), each episode thread posting its own turns.

TRL's `VLLMGeneration.generate` is collective in server mode (every rank must call it together), which episodes
of different lengths cannot do turn by turn; and TRL's client exists on the main process only. So each turn is
one request from the episode's thread, to the same endpoints TRL's own `VLLMClient` uses, token ids in and out:

- with an image: `POST /v1/chat/completions/render` once per image gives its processed features (valid for any
  token sequence), then `POST /inference/v1/generate` with the episode's token ids and those features;
- text only: `POST /v1/completions` with the token ids as the prompt.

Sampling follows the GRPO settings; generation stops after an action's closing tag (kept in the output), and the
sampled token's log-probability comes back for TRL's importance-sampling correction. The weights are TRL's
business: with `use_vllm=True, vllm_mode="server"` the trainer pushes them to the server before every rollout.
Start the server on its own GPU with `CUDA_VISIBLE_DEVICES=7 trl vllm-serve --model M` (see the README).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from agent.models.base import BackendError
from agent.tools.http import provider_message
from training.generation import Sampling
from training.models import TrainingInputError
from training.policy import TurnOutput, TurnRequest

FINAL_ONLY = 2  # vLLM's RequestOutputKind.FINAL_ONLY: a non-streamed request answers with every finished sequence


def check_server(base_url: str, *, timeout_s: float = 10.0) -> None:
    """Fail before loading any weights when the server is not there."""
    try:
        response = httpx.get(f"{base_url.rstrip('/')}/health", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise TrainingInputError(
            f"cannot reach the vLLM server at {base_url} ({type(exc).__name__}: {exc}); start it on its own GPU, "
            "e.g. `CUDA_VISIBLE_DEVICES=7 trl vllm-serve --model MODEL`, or drop --vllm-server to generate with "
            "transformers"
        ) from None
    if response.status_code != 200:
        raise TrainingInputError(f"the vLLM server at {base_url} answered /health with HTTP {response.status_code}")


def sampled_logprobs(choice: dict[str, Any], token_ids: list[int]) -> list[float]:
    """The log-probability of each sampled token, from vLLM's logprobs in either of its layouts."""
    from trl.generation.vllm_client import parse_logprobs

    values, ids = parse_logprobs([choice.get("logprobs")])
    if values is None or ids is None:
        raise ValueError("the server returned no logprobs")
    out = []
    for token, position_values, position_ids in zip(token_ids, values[0], ids[0], strict=True):
        value = position_values[position_ids.index(token)]
        out.append(float("nan") if value is None else float(value))
    return out


class VLLMTurnClient:
    """`TurnGenerator` over a vLLM server (see the module docstring)."""

    def __init__(self, base_url: str, sampling: Sampling, *, timeout_s: float = 600.0):
        self.base_url = base_url.rstrip("/")
        self.sampling = sampling
        self.endpoint = f"vllm:{self.base_url}"
        # One pooled client for every episode thread (httpx.Client is thread-safe).
        self.http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=10.0), limits=httpx.Limits(max_connections=256)
        )
        self._model: str | None = None
        self._features: dict[str, Any] = {}
        self._lock = threading.Lock()

    def begin(self, episodes: int) -> None:
        pass  # the server batches concurrent requests itself

    @contextmanager
    def episode(self) -> Iterator[None]:
        yield

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self.http.request(method, f"{self.base_url}{path}", json=body)
        except httpx.HTTPError as exc:
            raise BackendError(
                self.endpoint, f"cannot reach the vLLM server ({type(exc).__name__}: {exc}); is it still running?"
            ) from None
        if response.status_code != 200:
            detail = provider_message(response.content) or response.text[:300]  # vLLM's error.message, or the body
            raise BackendError(self.endpoint, f"{path} answered HTTP {response.status_code}: {detail}")
        try:
            return response.json()
        except ValueError:
            raise BackendError(self.endpoint, f"{path} answered with something that is not JSON") from None

    @property
    def model(self) -> str:
        with self._lock:
            if self._model is None:
                models = self._request("GET", "/v1/models")
                try:
                    self._model = str(models["data"][0]["id"])
                except (KeyError, IndexError, TypeError) as exc:
                    raise BackendError(self.endpoint, f"cannot read the served model from /v1/models: {exc}") from None
            return self._model

    def _image_features(self, request: TurnRequest) -> Any:
        from trl.generation.vllm_client import to_openai_messages

        key = request.image_key or ""
        with self._lock:
            cached = self._features.get(key)
        if cached is not None:
            return cached
        messages = [{"role": "user", "content": [{"type": "image", "image": image} for image in request.images]}]
        body = {"model": self.model, "messages": to_openai_messages(messages), "max_tokens": 1}
        features = self._request("POST", "/v1/chat/completions/render", body).get("features")
        if features is None:
            raise BackendError(
                self.endpoint, "/v1/chat/completions/render returned no features (vLLM >= 0.30 with --enable-scale-out)"
            )
        with self._lock:
            self._features[key] = features
        return features

    def _sampling_params(self, request: TurnRequest) -> dict[str, Any]:
        s = self.sampling
        return {
            "n": 1,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k if s.top_k is not None else 0,
            "min_p": s.min_p if s.min_p is not None else 0.0,
            "repetition_penalty": s.repetition_penalty,
            "max_tokens": request.max_new_tokens,
            "logprobs": 0,
            "stop": list(request.stop),
            "include_stop_str_in_output": True,  # the closing tag is part of what the policy sampled
        }

    def generate(self, request: TurnRequest, cancel: threading.Event | None) -> TurnOutput:
        if cancel is not None and cancel.is_set():
            return TurnOutput([], None)
        params = self._sampling_params(request)
        if request.images:
            body = {
                "request_id": f"rollout-{uuid.uuid4().hex}",
                "model": self.model,
                "token_ids": request.ids,
                "features": self._image_features(request),
                "sampling_params": {**params, "output_kind": FINAL_ONLY},
            }
            choice = self._first_choice(self._request("POST", "/inference/v1/generate", body))
        else:
            body = {
                "model": self.model,
                "prompt": [request.ids],
                "return_token_ids": True,
                "return_tokens_as_token_ids": True,
                **params,
            }
            choice = self._first_choice(self._request("POST", "/v1/completions", body))
        ids = [int(t) for t in choice.get("token_ids") or []]
        try:
            logprobs = sampled_logprobs(choice, ids)
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(self.endpoint, f"cannot read the sampled tokens' logprobs: {exc}") from None
        return TurnOutput(ids, logprobs)

    def _first_choice(self, body: dict[str, Any]) -> dict[str, Any]:
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise BackendError(self.endpoint, "the server answered without choices")
        return choices[0]
