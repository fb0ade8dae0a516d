"""The OpenAI backend: SSE line splitting (any chunking of the byte stream gives the same lines), and the
errors an endpoint answers with, read from the bodies real servers send (scripted on loopback)."""

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.models.openai_backend import _sse_lines
from tests.servers.chat_completions import HTTPFailure, StreamError

BODY = 'data: {"choices": [{"delta": {"content": "Zürich 東京"}}]}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n'.encode()


def _response(chunks):
    return httpx.Response(200, content=iter(chunks))


@given(st.lists(st.integers(min_value=1, max_value=len(BODY) - 1), unique=True).map(sorted))
def test_any_chunking_gives_the_lines_httpx_would(cuts):
    chunks = [BODY[a:b] for a, b in zip([0, *cuts], [*cuts, len(BODY)], strict=True)]
    assert list(_sse_lines(_response(chunks))) == list(httpx.Response(200, content=BODY).iter_lines())


def test_a_last_line_without_newline_is_kept():
    assert list(_sse_lines(_response([b"data: x\n", b"data: y"]))) == ["data: x", "data: y"]


def _stream_error(turn, *, model="scripted-model", path="/v1"):
    from agent.models.base import BackendError
    from agent.models.openai_backend import OpenAIBackend
    from tests.servers.chat_completions import scripted_chat_server

    with scripted_chat_server([turn]) as server:
        backend = OpenAIBackend(model, server.base_url.removesuffix("/v1") + path)
        try:
            list(backend.stream([{"role": "user", "content": "q"}], max_new_tokens=50, stop=[]))
        except BackendError as exc:
            return exc.message
        finally:
            backend.close()
    raise AssertionError("the stream did not fail")


@pytest.mark.parametrize(
    "failure,expected",
    [
        (HTTPFailure(500, "engine died"), "HTTP 500 (engine died)"),  # OpenAI and vLLM: error.message
        (HTTPFailure(400, "prompt too long", shape="vllm-legacy"), "HTTP 400 (prompt too long)"),  # older vLLM, SGLang
        (HTTPFailure(503, "Service Unavailable", shape="fastapi"), "HTTP 503 (Service Unavailable)"),  # detail
        (HTTPFailure(422, "Field required", shape="fastapi-validation"), "HTTP 422 (body.messages: Field required)"),
    ],
)
def test_endpoint_errors_read_the_servers_own_words_in_each_real_shape(failure, expected):
    message = _stream_error(failure)
    assert message.startswith(expected)
    assert "{" not in message  # never a raw dict


def test_a_wrong_base_url_says_to_check_it_not_the_model():
    message = _stream_error("<answer>x</answer>", path="")  # FastAPI's {"detail": "Not Found"}: no /v1
    assert message.startswith("HTTP 404 (Not Found)") and "base URL" in message and "{" not in message


def test_an_unknown_model_names_it_from_vllms_message():
    message = _stream_error("<answer>x</answer>", model="no-such-model")
    assert "The model `no-such-model` does not exist." in message and "GET /v1/models" in message


def test_an_error_event_mid_stream_is_reported_with_its_message():
    message = _stream_error(StreamError("<reason>a b c d e", "CUDA out of memory", after_words=2))
    assert message == "server error mid-stream: CUDA out of memory"
