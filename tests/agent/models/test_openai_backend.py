"""The OpenAI backend's SSE line splitting: any chunking of the byte stream gives the same lines."""

import httpx
from hypothesis import given
from hypothesis import strategies as st

from agent.models.openai_backend import _sse_lines

BODY = 'data: {"choices": [{"delta": {"content": "Zürich 東京"}}]}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n'.encode()


def _response(chunks):
    return httpx.Response(200, content=iter(chunks))


@given(st.lists(st.integers(min_value=1, max_value=len(BODY) - 1), unique=True).map(sorted))
def test_any_chunking_gives_the_lines_httpx_would(cuts):
    chunks = [BODY[a:b] for a, b in zip([0, *cuts], [*cuts, len(BODY)], strict=True)]
    assert list(_sse_lines(_response(chunks))) == list(httpx.Response(200, content=BODY).iter_lines())


def test_a_last_line_without_newline_is_kept():
    assert list(_sse_lines(_response([b"data: x\n", b"data: y"]))) == ["data: x", "data: y"]
