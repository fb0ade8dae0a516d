"""The judge: rule matching, reply parsing, and the LLM judge against a loopback chat-completions server."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from agent.judge import (
    EVAL_PROMPT,
    REWARD_PROMPT,
    JudgeCache,
    JudgeConfig,
    Judgement,
    LLMJudge,
    RuleJudge,
    build_judge,
    load_prompt,
    normalise_answer,
    parse_reply,
)
from tests.servers.chat_completions import Delayed, GarbageStream, HTTPFailure, Refusal, scripted_chat_server

GOLDS = ("Spain", "Kingdom of Spain", "España")


# ---- rule judge -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prediction",
    ["Spain", "spain", "SPAIN.", "  Spain!! ", "the Kingdom of Spain", "It comes from Spain.", "Espana", "españa"],
)
def test_rule_judge_accepts_case_punctuation_articles_accents_and_containment(prediction):
    assert RuleJudge().judge_sync("Where?", prediction, GOLDS).verdict == "correct"


@pytest.mark.parametrize("prediction", ["Spaniard", "Portugal", "Unable to answer due to lack of relevant information"])
def test_rule_judge_rejects_other_answers_and_partial_words(prediction):
    judgement = RuleJudge().judge_sync("Where?", prediction, GOLDS)
    assert judgement.verdict == "incorrect"
    assert judgement.score == 0.0


def test_rule_judge_matches_an_alias_from_candidate_answers():
    golds = ["Order of Hospitallers", "Knights Hospitaller", "Order of Saint John"]
    judgement = RuleJudge().judge_sync("Which order?", "The Knights Hospitaller", golds)
    assert judgement.verdict == "correct" and "Knights Hospitaller" in judgement.reason
    assert judgement.judge == "rule" and judgement.score == 1.0


def test_rule_judge_reads_thousands_separators_as_one_number():
    assert normalise_answer("1,000 metres") == "1000 metres"
    assert RuleJudge().judge_sync("How tall?", "1000 metres", ["1,000 metres"]).verdict == "correct"
    assert RuleJudge().judge_sync("How tall?", "100 metres", ["1,000 metres"]).verdict == "incorrect"


def test_no_answer_is_incorrect_and_no_gold_is_unknown():
    judge = RuleJudge()
    assert judge.judge_sync("Q", None, GOLDS).verdict == "incorrect"
    assert judge.judge_sync("Q", "   ", GOLDS).verdict == "incorrect"
    unknown = judge.judge_sync("Q", "Spain", ["", "  "])
    assert unknown.verdict == "unknown" and unknown.score is None


# ---- parsing replies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "prompt", "verdict"),
    [
        ("Both name the same country. [CORRECT]", "eval", "correct"),
        ("The answer names Portugal, not Spain.\n[INCORRECT]", "eval", "incorrect"),
        ("[ correct ]", "eval", "correct"),
        ("MATCH: true\nREASON: same country", "reward", "correct"),
        ("MATCH: false\nREASON: a different country", "reward", "incorrect"),
        ("**MATCH:** **false**\nREASON: no", "reward", "incorrect"),
        ("match = yes", "reward", "correct"),
        ("MATCH: true\nREASON: fine", "eval", "correct"),  # the other format, when the asked one is absent
        ("<think>Maybe [INCORRECT]? No, it's the same.</think>Same entity. [CORRECT]", "eval", "correct"),
    ],
)
def test_parse_reply_reads_both_formats(reply, prompt, verdict):
    assert parse_reply(reply, prompt)[0] == verdict


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "I think the answer is probably right.",
        "Answer with [CORRECT] or [INCORRECT].",
        "MATCH: true or false",
        "<think>[CORRECT]",  # an unterminated think block decides nothing
    ],
)
def test_parse_reply_gives_unknown_when_nothing_or_both_are_said(reply):
    verdict, reason = parse_reply(reply, "eval")
    assert verdict == "unknown"
    assert reason


def test_parse_reply_takes_the_reason_line():
    assert parse_reply("MATCH: false\nREASON: Lisbon is not in Spain.", "reward") == (
        "incorrect",
        "Lisbon is not in Spain.",
    )


# ---- the LLM judge over HTTP ------------------------------------------------------------------------------


def _judge(server, tmp_path=None, **kwargs) -> LLMJudge:
    kwargs.setdefault("retries", 0)
    kwargs.setdefault("timeout_s", 5.0)
    cache = JudgeCache(tmp_path / "judge.db") if tmp_path is not None else None
    return LLMJudge(server.base_url, "scripted-model", cache=cache, **kwargs)


def test_llm_judge_sends_the_eval_prompt_and_reads_correct():
    with scripted_chat_server(["The answer names the same country. [CORRECT]"]) as server:
        judge = _judge(server)
        judgement = judge.judge_sync("What is the country of origin of this food?", "Spain", GOLDS)
    assert judgement == Judgement("correct", "The answer names the same country.", "llm:scripted-model@eval-v1")
    body = server.requests[0]
    assert body["stream"] is False and body["temperature"] == 0.0 and body["model"] == "scripted-model"
    user = body["messages"][-1]["content"]
    assert "What is the country of origin of this food?" in user
    assert "1. Spain\n2. Kingdom of Spain\n3. España" in user and "Model's answer: Spain" in user


def test_llm_judge_reward_prompt_reads_match_false():
    with scripted_chat_server(["MATCH: false\nREASON: Portugal is another country."]) as server:
        judgement = _judge(server, prompt=REWARD_PROMPT).judge_sync("Where?", "Portugal", GOLDS)
    assert judgement.verdict == "incorrect" and judgement.reason == "Portugal is another country."
    assert judgement.judge == "llm:scripted-model@reward-v1"
    assert "MATCH: true or false" in server.requests[0]["messages"][-1]["content"]


@pytest.mark.parametrize(
    ("turn", "reason_part"),
    [
        (Refusal("I can't assist with grading."), "refused"),
        ("Hard to say, really.", "no verdict"),
        (GarbageStream(), "not a chat completion"),
        (HTTPFailure(401, "invalid api key"), "HTTP 401: invalid api key"),
    ],
)
def test_llm_judge_failures_are_unknown_with_the_reason(turn, reason_part):
    with scripted_chat_server([turn]) as server:
        judgement = _judge(server).judge_sync("Where?", "Spain", GOLDS)
    assert judgement.verdict == "unknown" and judgement.score is None
    assert reason_part in judgement.reason


def test_llm_judge_retries_a_500_then_decides():
    replies = iter([HTTPFailure(500, "overloaded"), HTTPFailure(503), "[CORRECT]"])
    with scripted_chat_server(lambda body: next(replies)) as server:
        judge = _judge(server, retries=3, backoff_s=0.01)
        judgement = judge.judge_sync("Where?", "Spain", GOLDS)
    assert judgement.verdict == "correct"
    assert len(server.requests) == 3


def test_llm_judge_down_after_retries_is_unknown():
    with scripted_chat_server(lambda body: HTTPFailure(500, "boom")) as server:
        judge = _judge(server, retries=1, backoff_s=0.01)
        judgement = judge.judge_sync("Where?", "Spain", GOLDS)
    assert judgement.verdict == "unknown"
    assert "HTTP 500" in judgement.reason and "after 2 attempts" in judgement.reason
    assert len(server.requests) == 2


def test_llm_judge_timeout_is_unknown():
    with scripted_chat_server([Delayed(3.0, "[CORRECT]")]) as server:
        start = time.monotonic()
        judgement = _judge(server, timeout_s=0.3).judge_sync("Where?", "Spain", GOLDS)
    assert judgement.verdict == "unknown" and "timed out" in judgement.reason
    assert time.monotonic() - start < 2.5


def test_llm_judge_with_no_endpoint_listening_is_unknown():
    judge = LLMJudge("http://127.0.0.1:9/v1", "m", retries=0, timeout_s=2.0)
    judgement = judge.judge_sync("Where?", "Spain", GOLDS)
    assert judgement.verdict == "unknown" and "connection failed" in judgement.reason


def test_llm_judge_skips_the_call_when_there_is_no_answer():
    with scripted_chat_server(["[CORRECT]"]) as server:
        judgement = _judge(server).judge_sync("Where?", None, GOLDS)
    assert judgement.verdict == "incorrect" and server.requests == []


def test_cache_serves_decided_verdicts_but_asks_again_after_unknown(tmp_path):
    replies = iter(["no idea", "[INCORRECT]", "[CORRECT]"])
    with scripted_chat_server(lambda body: next(replies)) as server:
        judge = _judge(server, tmp_path)
        first = judge.judge_sync("Where?", "Spain", GOLDS)
        second = judge.judge_sync("Where?", "Spain", GOLDS)
        third = judge.judge_sync("Where?", "Spain", GOLDS)
        # Another prompt version is another key.
        other = LLMJudge(server.base_url, "scripted-model", prompt=REWARD_PROMPT, cache=judge.cache, retries=0)
        fourth = other.judge_sync("Where?", "Spain", GOLDS)
    assert (first.verdict, second.verdict, third.verdict) == ("unknown", "incorrect", "incorrect")
    assert (second.cached, third.cached) == (False, True)
    assert fourth.verdict == "correct" and not fourth.cached
    assert len(server.requests) == 3


def test_cache_is_shared_through_the_file(tmp_path):
    with scripted_chat_server(["[CORRECT]"]) as server:
        _judge(server, tmp_path).judge_sync("Where?", "Spain", GOLDS)
    again = LLMJudge("http://127.0.0.1:9/v1", "scripted-model", cache=JudgeCache(tmp_path / "judge.db"))
    judgement = again.judge_sync("Where?", "Spain", GOLDS)
    assert judgement.verdict == "correct" and judgement.cached


def test_concurrency_is_bounded():
    lock = threading.Lock()
    in_flight = [0, 0]  # now, peak

    def reply(body):
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
        time.sleep(0.15)
        with lock:
            in_flight[0] -= 1
        return "[CORRECT]"

    with scripted_chat_server(reply) as server:
        judge = _judge(server, concurrency=2)
        results = judge.judge_many_sync([(f"Q{i}", "Spain", GOLDS) for i in range(6)])
    assert [r.verdict for r in results] == ["correct"] * 6
    assert in_flight[1] == 2


def test_judge_is_awaitable_on_another_loop_and_callable_from_threads_meanwhile():
    with scripted_chat_server(lambda body: "[CORRECT]") as server:
        judge = _judge(server)

        async def main():
            awaited = await judge.judge("Q", "Spain", GOLDS)
            threaded = await asyncio.gather(
                *(asyncio.to_thread(judge.judge_sync, f"Q{i}", "Spain", GOLDS) for i in range(4))
            )
            return awaited, threaded

        awaited, threaded = asyncio.run(main())
    assert awaited.verdict == "correct" and all(j.verdict == "correct" for j in threaded)


# ---- configuration and prompts -----------------------------------------------------------------------------


def test_config_picks_llm_from_a_base_url_and_needs_a_model():
    assert JudgeConfig().kind == "rule"
    assert JudgeConfig(judge_base_url="http://x/v1", judge_model="m").kind == "llm"
    assert JudgeConfig(judge="rule", judge_base_url="http://x/v1").kind == "rule"
    with pytest.raises(ValueError, match="judge-model"):
        JudgeConfig(judge_base_url="http://x/v1")


def test_build_judge_reads_the_key_from_the_environment_and_never_describes_it(tmp_path):
    cfg = JudgeConfig(judge_base_url="http://x/v1", judge_model="m", judge_cache=str(tmp_path / "c.db"))
    judge = build_judge(cfg, environ={"JUDGE_API_KEY": "sekrit"})
    assert isinstance(judge, LLMJudge)
    assert judge.describe() == {
        "kind": "llm",
        "model": "m",
        "prompt": "eval",
        "prompt_version": "eval-v1",
        "base_url": "http://x/v1",
        "name": "llm:m@eval-v1",
    }
    assert "sekrit" not in repr(judge.describe()) and "sekrit" not in repr(cfg)
    assert build_judge(JudgeConfig()).describe()["kind"] == "rule"


def test_prompts_file_overrides_text_and_versions_it(tmp_path):
    path = tmp_path / "prompts.toml"
    path.write_text(
        '[eval]\nuser = "Q: {question}\\nGold: {golds}\\nA: {prediction}\\nSay [CORRECT] or [INCORRECT]."\n'
    )
    prompt = load_prompt("eval", path)
    assert prompt.user.startswith("Q: {question}") and prompt.system == EVAL_PROMPT.system
    assert prompt.version.startswith("eval-v1+") and prompt.version != EVAL_PROMPT.version
    path.write_text('[eval]\nversion = "mine-3"\nsystem = "Be terse."\n')
    assert load_prompt("eval", path).version == "mine-3"
    assert load_prompt("reward", path) == REWARD_PROMPT  # no [reward] table: the built-in one


def test_prompts_file_with_unknown_fields_is_refused(tmp_path):
    path = tmp_path / "prompts.toml"
    path.write_text('[eval]\nuser = "Q: {question} {answer}"\n')
    with pytest.raises(ValueError, match="may use only"):
        load_prompt("eval", path)
    path.write_text("[eval]\ntemperature = 1\n")
    with pytest.raises(ValueError, match="only version, system and user"):
        load_prompt("eval", path)
