"""The policy backend's token bookkeeping, driven by the episode loop, with turns from a loopback vLLM server
that answers in vLLM's own token-in/token-out formats (no vLLM here: see the README for what needs a GPU)."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from agent.conversation import ModelTurn, ToolFeedback, build_messages
from agent.events import EpisodeFinished, ToolFinished
from agent.loop import Budgets, run_episode
from agent.models.base import map_image_parts
from agent.protocol import get_dialect
from agent.tools.base import Toolbox
from tests.agent.conftest import RecordingTextSearch
from tests.servers.vllm_server import vllm_server
from training.generation import Sampling
from training.models import TrainingInputError
from training.policy import PolicyBackend, render_prompt
from training.vllm_turns import VLLMTurnClient, check_server

SEARCH = "<reason>I need to search the web.</reason><text_search>who designed it</text_search>"
ANSWER = "<reason>The results say it.</reason><answer>Wren</answer>"
DIALECT = get_dialect("deepmmsearch")


@pytest.fixture(scope="module")
def processor():
    from agent.models.tiny import build_tiny_vlm

    return build_tiny_vlm()[1]


def run(processor, base_url: str, image: Image.Image | None, question: str = "Who designed this building?"):
    client = VLLMTurnClient(base_url, Sampling(temperature=1.0))
    policy = PolicyBackend(processor, client)
    events = list(run_episode(question, image, policy, Toolbox(text_search=RecordingTextSearch())))
    client.close()
    return policy, events


def test_sampled_tokens_are_kept_and_everything_the_environment_wrote_is_masked(processor):
    image = Image.new("RGB", (64, 48), "red")
    with vllm_server(processor.tokenizer, [SEARCH, ANSWER]) as server:
        policy, events = run(processor, server.base_url, image)
    finished = events[-1]
    assert isinstance(finished, EpisodeFinished) and finished.status == "answered"
    trajectory = policy.trajectory(finished)
    tok = processor.tokenizer
    ids, mask = trajectory.completion_ids, trajectory.env_mask
    sampled = tok.decode([t for t, m in zip(ids, mask, strict=True) if m == 1])
    written = tok.decode([t for t, m in zip(ids, mask, strict=True) if m == 0])
    assert sampled == SEARCH + ANSWER
    assert "<information>" in written and "<information>" not in sampled
    assert ids[-1] == tok.eos_token_id and mask[-1] == 0  # a finished episode ends with EOS, not sampled

    # The whole sequence is the chat template's rendering of the conversation the loop built: training text is
    # the text the model read (the template's trailing newline after the last turn aside).
    information = next(e for e in events if isinstance(e, ToolFinished)).information
    steps = [ModelTurn(SEARCH), ToolFeedback("text_search", information), ModelTurn(ANSWER)]
    conversation = build_messages(DIALECT, "Who designed this building?", image, steps, max_tool_calls=10)
    rendered = processor.apply_chat_template(map_image_parts(conversation, lambda _: {"type": "image"}), tokenize=False)
    prompt_ids, _, _ = render_prompt(processor, conversation[:2])
    assert trajectory.prompt_ids == prompt_ids
    full = tok.decode(trajectory.prompt_ids + ids)
    # the processor expands the image placeholder to one token per image patch
    assert re.sub(r"(<\|image_pad\|>)+", "<|image_pad|>", full) == rendered.rstrip("\n")


def test_turns_carry_the_episode_ids_and_the_server_logprobs(processor):
    image = Image.new("RGB", (64, 48), "blue")
    with vllm_server(processor.tokenizer, [SEARCH, ANSWER]) as server:
        policy, events = run(processor, server.base_url, image)
        requests = list(server.requests)
    trajectory = policy.trajectory(events[-1])
    renders = [body for path, body in requests if path == "/v1/chat/completions/render"]
    generates = [body for path, body in requests if path == "/inference/v1/generate"]
    assert len(renders) == 1 and len(generates) == 2  # the image's features are fetched once per episode
    assert all(g["features"] == generates[0]["features"] for g in generates)
    first_turn = len(processor.tokenizer(SEARCH, add_special_tokens=False)["input_ids"])
    assert generates[0]["token_ids"] == trajectory.prompt_ids
    # the second turn continues from exactly the recorded ids: prompt, sampled turn, environment tokens
    env_end = len(generates[1]["token_ids"]) - len(trajectory.prompt_ids)
    assert generates[1]["token_ids"] == trajectory.prompt_ids + trajectory.completion_ids[:env_end]
    assert trajectory.env_mask[:first_turn] == [1] * first_turn
    params = generates[0]["sampling_params"]
    assert params["stop"] == list(DIALECT.stop_sequences) and params["include_stop_str_in_output"] is True
    assert params["logprobs"] == 0 and params["temperature"] == 1.0
    sampled_logprobs = [lp for lp, m in zip(trajectory.logprobs, trajectory.env_mask, strict=True) if m == 1]
    assert sampled_logprobs[:3] == [-0.25, -0.26, -0.27]
    assert all(lp == 0.0 for lp, m in zip(trajectory.logprobs, trajectory.env_mask, strict=True) if m == 0)


def test_text_only_questions_use_the_completions_endpoint_with_token_ids(processor):
    with vllm_server(processor.tokenizer, [SEARCH, ANSWER]) as server:
        policy, events = run(processor, server.base_url, None)
        paths = [path for path, _ in server.requests]
        prompts = [body["prompt"] for path, body in server.requests if path == "/v1/completions"]
    assert events[-1].status == "answered"
    assert set(paths) == {"/v1/completions"}
    assert prompts[0] == [policy.trajectory(events[-1]).prompt_ids]


def test_a_failing_server_ends_the_episode_with_its_error(processor):
    with vllm_server(processor.tokenizer, [SEARCH]) as server:
        server.fail_with = 500
        _, events = run(processor, server.base_url, Image.new("RGB", (32, 32)))
    finished = events[-1]
    assert finished.status == "error"
    assert "HTTP 500" in finished.reason and "scripted failure" in finished.reason


def test_an_unreachable_server_is_a_clear_error_before_training():
    with pytest.raises(TrainingInputError, match="cannot reach the vLLM server at http://127.0.0.1:9 .*trl vllm-serve"):
        check_server("http://127.0.0.1:9", timeout_s=2)


def test_a_server_gone_mid_run_ends_the_episode_with_a_model_error(processor):
    _, events = run(processor, "http://127.0.0.1:9", Image.new("RGB", (32, 32)))
    assert events[-1].status == "error" and "cannot reach the vLLM server" in events[-1].reason


def test_budgets_pass_through_as_max_tokens(processor):
    with vllm_server(processor.tokenizer, [SEARCH, ANSWER]) as server:
        client = VLLMTurnClient(server.base_url, Sampling())
        policy = PolicyBackend(processor, client)
        budgets = Budgets(max_turn_tokens=7)
        events = list(run_episode("q?", None, policy, Toolbox(), budgets=budgets))
        max_tokens = [body["max_tokens"] for _, body in server.requests]
    assert max_tokens and all(m == 7 for m in max_tokens)
    assert events[-1].status in ("format_error", "budget_exhausted")  # 7 tokens cannot hold a whole turn
