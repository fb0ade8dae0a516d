"""The running app through gradio_client: every streamed output of /ask is read, and traces are recorded."""

import sqlite3
import time

from gradio_client import Client, handle_file


def _stream(client, *args):
    job = client.submit(*args, api_name="/ask")
    updates = [(time.monotonic(), out) for out in job]
    return job, [out for _, out in updates] or job.outputs()


def _latest(updates, index):
    """The last real value of one output (skipped outputs come back as update dicts)."""
    for out in reversed(updates):
        value = out[index]
        if not (isinstance(value, dict) and value.get("__type__") == "update"):
            return value
    return None


def test_ask_streams_turns_tools_crop_cards_and_answer(stack, photo):
    client = Client(stack.url, auth=stack.auth, verbose=False)
    job, updates = _stream(client, handle_file(photo), "When did this bridge open?", "")
    assert len(updates) >= 4  # streamed: several updates, not one final value
    chats = [u[0] for u in updates if isinstance(u[0], list)]
    pending = [m for chat in chats for m in chat if (m.get("metadata") or {}).get("status") == "pending"]
    assert pending, "a turn or tool block was shown while still running"
    final_chat = chats[-1]
    titles = [(m.get("metadata") or {}).get("title") or "" for m in final_chat]
    assert any(t.startswith("Turn 1 · crop search") for t in titles)
    assert any(t.startswith("🔧 crop search · cloud_vision") for t in titles)
    assert any(t.startswith("🔧 text search · searxng") for t in titles)
    assert "1937" in str(final_chat[-1]["content"])
    assert "Final answer" in _latest(updates, 1) and "1937" in _latest(updates, 1)
    assert "3 / 16" in _latest(updates, 2)  # turns against the budget
    annotated = _latest(updates, 3)
    assert annotated and annotated["annotations"], "the crop box is drawn on the image"
    assert _latest(updates, 4) is not None  # the crop itself
    cards = _latest(updates, 6)
    assert "dm-card" in cards and 'rel="noopener noreferrer nofollow"' in cards and "<script" not in cards
    with sqlite3.connect(stack.db) as db:
        status = db.execute("select status, final_answer from episodes order by started_at desc limit 1").fetchone()
    assert status[0] == "answered" and status[1].startswith("1937")


def test_empty_question_gets_a_readable_message(stack):
    client = Client(stack.url, auth=stack.auth, verbose=False)
    _, updates = _stream(client, None, "   ", "")
    assert "Type a question" in str(updates[-1][0])


def test_unreachable_endpoint_is_a_readable_error_and_recorded(stack):
    client = Client(stack.url, auth=stack.auth, verbose=False)
    # Settings are ordinary inputs of /ask: pass every input by position, changing the endpoint.
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/ask"]["parameters"]
    args = [p.get("parameter_default") for p in api]
    labels = [p["label"] for p in api]
    args[labels.index("Question")] = "Anything?"
    args[labels.index("Endpoint (openai backend)")] = "http://127.0.0.1:9/v1"
    job = client.submit(*args, api_name="/ask")
    updates = list(job) or job.outputs()
    text = str(updates[-1][0]) + str(_latest(updates, 1))
    assert "127.0.0.1:9" in text and "Traceback" not in text


def test_stop_cancels_a_streaming_episode_and_it_is_recorded_as_cancelled(stack):
    from tests.servers.chat_completions import scripted_chat_server

    slow_turn = "<reason>" + " ".join(f"w{i}" for i in range(400)) + "</reason><answer>never</answer>"
    with scripted_chat_server([slow_turn], token_delay_s=0.02) as slow:  # 8 s of tokens, unless stopped
        client = Client(stack.url, auth=stack.auth, verbose=False)
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/ask"]["parameters"]
        args = [p.get("parameter_default") for p in api]
        labels = [p["label"] for p in api]
        args[labels.index("Question")] = "Stop me"
        args[labels.index("Endpoint (openai backend)")] = slow.base_url
        start = time.monotonic()
        job = client.submit(*args, api_name="/ask")
        while "w5 " not in str(job.outputs()[-1][0] if job.outputs() else "") and time.monotonic() - start < 20:
            time.sleep(0.05)  # tokens are streaming
        client.predict(api_name="/stop")
        job.result(timeout=30)
    final = job.outputs()[-1]
    assert "w399" not in str(final[0])  # stopped, not streamed to the end
    with sqlite3.connect(stack.db) as db:
        status = db.execute("select status from episodes where question = 'Stop me'").fetchone()
    assert status == ("cancelled",)


def test_traces_list_and_annotation_api(stack, photo):
    client = Client(stack.url, auth=stack.auth, verbose=False)
    table, count, _runs = client.predict(
        "", "answered", "any", "any", "any", "any", api_name="/list_traces"
    )  # State outputs are not returned
    assert "match" in count and table["data"] and table["data"][0][2] == "answered"


def _refused(stack, path) -> str:
    """What the answer box says when `path` is uploaded with a question."""
    client = Client(stack.url, auth=stack.auth, verbose=False)
    _, updates = _stream(client, handle_file(str(path)), "What is in this picture?", "")
    return _latest(updates, 1)


def test_a_file_that_is_not_an_image_is_named_with_what_would_work_and_no_server_path(stack, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("Dear all, the photos follow in the next mail.")
    answer = _refused(stack, fake)
    assert "holiday.jpg" in answer and "not an image" in answer and "JPEG, PNG" in answer
    assert "/tmp" not in answer and "gradio" not in answer.lower() and "Traceback" not in answer


def test_a_12000_pixel_square_jpeg_is_refused_with_its_size_and_what_would_work(stack, tmp_path):
    from PIL import Image

    huge = tmp_path / "scan.jpg"
    Image.new("L", (12000, 12000), 128).save(huge, quality=10)  # a real JPEG of 144 million pixels
    answer = _refused(stack, huge)
    assert "scan.jpg" in answer and "12000×12000" in answer and "smaller copy" in answer
    assert "upload a JPEG" not in answer.lower() and "/tmp" not in answer
