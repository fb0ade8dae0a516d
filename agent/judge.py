"""One judge for eval and for the GRPO reward (DESIGN.md §3.8): is a prediction one of the gold answers?

Two kinds:
- `rule`: normalised exact or contained match against the gold answers and their aliases (FVQA's
  `candidate_answers`). Case, accents, articles, punctuation and spacing are ignored; a gold answer contained
  in the prediction as whole words counts (MMSearch-R1's SubEM). Needs no endpoint.
- `llm`: any OpenAI-compatible chat endpoint (vLLM serving a large open model, or a hosted API), with one of two
  prompts in our own words after the papers: `reward` (DeepMMSearch-R1's strict short-answer match, replying
  `MATCH: true/false` and a reason) and `eval` (semantically equivalent to at least one gold answer, replying
  `[CORRECT]`/`[INCORRECT]`). Prompts carry a version and can be replaced from a TOML file.

A judgement is `correct`, `incorrect` or `unknown`. Anything that stops the judge from deciding (endpoint down
after retries, a refusal, a reply in neither format, both verdicts at once) is `unknown` with the reason, never
a silent `incorrect`: eval counts unknowns apart and `--rejudge` fixes them later, GRPO gets `score` None.
A missing prediction (the episode never answered) is `incorrect` without asking anyone; no gold answers is
`unknown`.

LLM verdicts are cached in SQLite under (question, prediction, golds, model, prompt version); unknowns are not
cached, so a retry asks again. Calls run on agent.aio's background event loop, at most `concurrency` at a time,
with retries and back-off on 429/5xx/timeouts (agent/tools/http.py's client, Retry-After honoured).
`judge()` may be awaited on any event loop; `judge_sync()` serves threads (eval workers, a trainer's reward).
The API key comes from JUDGE_API_KEY only and is never stored, logged or described.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import tomllib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from agent.aio import background_loop, run_sync
from agent.flags import check_bounds, setting
from agent.tools.http import HttpClient, HttpPolicy, ToolError, provider_message

Verdict = Literal["correct", "incorrect", "unknown"]
PromptName = Literal["eval", "reward"]
API_KEY_VAR = "JUDGE_API_KEY"
RULE_VERSION = "rule-v1"
REPLY_EXCERPT = 300  # characters of an unparseable reply kept in the reason


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    judge: str  # "rule" or "llm:<model>@<prompt version>"
    cached: bool = False

    @property
    def score(self) -> float | None:
        """1.0 correct, 0.0 incorrect, None unknown (a reward function must not turn None into 0)."""
        return {"correct": 1.0, "incorrect": 0.0}.get(self.verdict)


@dataclass(frozen=True)
class JudgeConfig:
    judge: str | None = setting(
        None,
        "rule (normalised match against gold answers and aliases) or llm (an OpenAI-compatible endpoint); "
        "default: llm when a judge base URL is set, else rule",
        env="JUDGE",
        choices=("rule", "llm"),
    )
    judge_base_url: str = setting(
        "",
        "OpenAI-compatible base URL of the judge, e.g. http://HOST:8000/v1 (key from JUDGE_API_KEY)",
        env="JUDGE_BASE_URL",
    )
    judge_model: str = setting("", "model name the judge endpoint serves", env="JUDGE_MODEL")
    judge_prompt: str = setting(
        "eval",
        "eval: semantically equivalent to one gold answer, [CORRECT]/[INCORRECT]; "
        "reward: strict match for GRPO, MATCH: true/false",
        env="JUDGE_PROMPT",
        choices=("eval", "reward"),
    )
    judge_prompts_file: str | None = setting(
        None, "TOML file replacing the judge prompts ([eval] / [reward] tables: version, system, user)"
    )
    judge_cache: str = setting(
        "runs/judge_cache.db", "SQLite cache of LLM verdicts; empty = no cache", env="JUDGE_CACHE"
    )
    judge_concurrency: int = setting(8, "judge requests in flight at once", low=1)
    judge_timeout_s: float = setting(
        60.0, "seconds allowed per judge request attempt", flag="--judge-timeout", low=0.0, low_exclusive=True
    )
    judge_retries: int = setting(3, "retries on 429/5xx/timeouts/connection errors, with back-off", low=0)
    judge_max_tokens: int = setting(512, "most tokens the judge may reply with (reasoning models need more)")

    @property
    def kind(self) -> Literal["rule", "llm"]:
        if self.judge is not None:
            return "llm" if self.judge == "llm" else "rule"
        return "llm" if self.judge_base_url else "rule"

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.kind == "llm" and not (self.judge_base_url and self.judge_model):
            raise ValueError(
                "the llm judge needs --judge-base-url (or JUDGE_BASE_URL) and --judge-model (or JUDGE_MODEL); "
                "or choose --judge rule"
            )


# ---- prompts ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgePrompt:
    name: PromptName
    version: str  # part of every cache key and of the judge's name: change it whenever the text changes
    system: str
    user: str  # fields: {question}, {golds} (a numbered list), {prediction}


REWARD_PROMPT = JudgePrompt(
    name="reward",
    version="reward-v1",
    system="You grade short answers against reference answers. You are strict, consistent and brief.",
    user=(
        "Question: {question}\n"
        "Reference answers (matching any one is enough):\n{golds}\n"
        "Candidate answer: {prediction}\n\n"
        "Does the candidate answer match at least one reference answer?\n"
        "- Aliases, synonyms and other names of the same entity count as a match.\n"
        "- Ignore case, articles (a, an, the), punctuation and spacing.\n"
        "- Numbers, dates and quantities match when they agree up to reasonable rounding or formatting.\n"
        "- No match if the candidate names something else, is vaguer than the reference, hedges between "
        "several answers, or declines to answer.\n\n"
        "Reply with exactly two lines and nothing else:\n"
        "MATCH: true or false\n"
        "REASON: one short sentence"
    ),
)

EVAL_PROMPT = JudgePrompt(
    name="eval",
    version="eval-v1",
    system="You check answers to questions about images against ground-truth answers. You are fair and brief.",
    user=(
        "Question: {question}\n"
        "Ground-truth answers:\n{golds}\n"
        "Model's answer: {prediction}\n\n"
        "The model's answer is CORRECT if it is semantically equivalent to at least ONE ground-truth answer: "
        "the same entity, value or fact, even in other words, another spelling, or with extra detail that is "
        "true. It is INCORRECT if it disagrees with every ground-truth answer, is too vague to pick out the "
        "same thing, offers several candidates, or says it cannot answer.\n\n"
        "Give a one-sentence justification, then finish with exactly one of: [CORRECT] or [INCORRECT]"
    ),
)

PROMPTS: dict[str, JudgePrompt] = {"eval": EVAL_PROMPT, "reward": REWARD_PROMPT}


def load_prompt(name: str, prompts_file: str | os.PathLike[str] | None = None) -> JudgePrompt:
    """The built-in prompt `name`, with fields replaced from the file's `[name]` table when given.

    A file that changes the text without its own `version` gets "<built-in version>+<hash of the text>", so
    verdicts cached under the built-in prompt are never served for a different one.
    """
    if name not in PROMPTS:
        raise ValueError(f"unknown judge prompt {name!r}: choose one of {sorted(PROMPTS)}")
    prompt = PROMPTS[name]
    if not prompts_file:
        return prompt
    path = Path(prompts_file)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"judge prompts file {path}: cannot read it ({exc})") from None
    table = data.get(name)
    if table is None:
        return prompt
    if not isinstance(table, dict) or set(table) - {"version", "system", "user"}:
        raise ValueError(f"judge prompts file {path}: [{name}] may set only version, system and user")
    changed = replace(prompt, **{k: str(v) for k, v in table.items() if k in ("system", "user")})
    try:
        changed.user.format(question="", golds="", prediction="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"judge prompts file {path}: [{name}].user may use only {{question}}, {{golds}} and {{prediction}} "
            f"(double other braces): {exc}"
        ) from None
    version = table.get("version")
    if not version and changed != prompt:
        digest = hashlib.sha256(f"{changed.system}\0{changed.user}".encode()).hexdigest()[:8]
        version = f"{prompt.version}+{digest}"
    return replace(changed, version=str(version or prompt.version))


def prompt_messages(prompt: JudgePrompt, question: str, prediction: str, golds: Sequence[str]) -> list[dict[str, str]]:
    listed = "\n".join(f"{n}. {gold}" for n, gold in enumerate(golds, 1))
    user = prompt.user.format(question=question.strip(), golds=listed, prediction=prediction.strip())
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": user}]


# ---- parsing replies --------------------------------------------------------------------------------------

_THINK = re.compile(r"<think>.*?(</think>|$)", re.S | re.I)
_BRACKETED = re.compile(r"\[\s*(in)?correct\s*\]", re.I)
# "MATCH: true or false" is the instructions echoed back, not a verdict.
_MATCH = re.compile(
    r"\bmatch[*_\s]*[:=][\s*_`\"']*(true|false|yes|no)\b(?!\s*(?:or|/|\|)\s*(?:true|false|yes|no)\b)", re.I
)
_REASON = re.compile(r"\breason\s*[:=]\s*(.+)", re.I | re.S)


def parse_reply(text: str, prompt: PromptName = "eval") -> tuple[Verdict, str]:
    """(verdict, reason) from a judge's reply in either format; `unknown` when it decides nothing clearly.

    Reasoning models' `<think>` blocks are dropped first. The prompt's own format is read first and the other
    one only when it is absent. Both verdicts in one reply (e.g. the instructions echoed back) are ambiguous.
    """
    body = _THINK.sub("", text or "").strip()
    bracketed = {"incorrect" if m.group(1) else "correct" for m in _BRACKETED.finditer(body)}
    matched = {"correct" if m.group(1).lower() in ("true", "yes") else "incorrect" for m in _MATCH.finditer(body)}
    found = (bracketed or matched) if prompt == "eval" else (matched or bracketed)
    excerpt = " ".join(body.split())[:REPLY_EXCERPT]
    if not body:
        return "unknown", "the judge replied with empty text"
    if not found:
        return "unknown", f"no verdict in the judge's reply: {excerpt!r}"
    if len(found) > 1:
        return "unknown", f"the judge's reply holds both verdicts: {excerpt!r}"
    verdict: Verdict = found.pop()  # type: ignore[assignment]
    reason_match = _REASON.search(body)
    if reason_match:
        reason = reason_match.group(1)
    else:
        reason = _MATCH.sub("", _BRACKETED.sub("", body))
    return verdict, " ".join(reason.split())[:1000] or verdict


# ---- the rule judge ----------------------------------------------------------------------------------------

_ARTICLES = {"a", "an", "the"}
_NUMBER_SEPARATOR = re.compile(r"(?<=\d)[,_](?=\d{3}\b)")


def normalise_answer(text: str) -> str:
    """Lower case, accents and punctuation removed, articles dropped, spacing collapsed; `1,000` is `1000`."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = _NUMBER_SEPARATOR.sub("", text)
    text = "".join(c if c.isalnum() else " " for c in text)
    return " ".join(w for w in text.split() if w not in _ARTICLES)


def rule_verdict(prediction: str, golds: Sequence[str]) -> tuple[Verdict, str]:
    pred = normalise_answer(prediction)
    if not pred:
        return "incorrect", "the answer is empty once normalised"
    padded = f" {pred} "
    for gold in golds:
        norm = normalise_answer(gold)
        if not norm:
            continue
        if norm == pred:
            return "correct", f"matches gold answer {gold!r}"
        if f" {norm} " in padded:
            return "correct", f"contains gold answer {gold!r}"
    return "incorrect", f"matches none of {len(golds)} gold answers"


class Judge:
    """What eval and GRPO call. Subclasses implement `_judge`; short-circuits are shared."""

    name: str = ""

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    async def _judge(self, question: str, prediction: str, golds: tuple[str, ...]) -> Judgement:
        raise NotImplementedError

    async def judge(self, question: str, prediction: str | None, golds: Sequence[str]) -> Judgement:
        kept = tuple(g for g in golds if g and g.strip())
        if not kept:
            return Judgement("unknown", "no gold answers to judge against", self.name)
        if prediction is None or not prediction.strip():
            return Judgement("incorrect", "the episode gave no answer", self.name)
        return await self._judge(question, prediction, kept)

    def judge_sync(self, question: str, prediction: str | None, golds: Sequence[str]) -> Judgement:
        """For threads: runs on agent.aio's background loop and waits (never call it on that loop)."""
        if _on_background_loop():
            raise RuntimeError("judge_sync() was called on the judge's own event loop: await judge() there")
        return run_sync(self.judge(question, prediction, golds))

    async def judge_many(self, triples: Sequence[tuple[str, str | None, Sequence[str]]]) -> list[Judgement]:
        """Judge many at once (bounded by the judge's concurrency), in order."""
        return list(await asyncio.gather(*(self.judge(q, p, g) for q, p, g in triples)))

    def judge_many_sync(self, triples: Sequence[tuple[str, str | None, Sequence[str]]]) -> list[Judgement]:
        if _on_background_loop():
            raise RuntimeError("judge_many_sync() was called on the judge's own event loop: await judge_many()")
        return run_sync(self.judge_many(triples))

    def close(self) -> None:
        pass


def _on_background_loop() -> bool:
    try:
        return asyncio.get_running_loop() is background_loop()
    except RuntimeError:
        return False


class RuleJudge(Judge):
    name = "rule"

    def describe(self) -> dict[str, Any]:
        return {"kind": "rule", "model": None, "prompt": None, "prompt_version": RULE_VERSION, "name": self.name}

    async def _judge(self, question: str, prediction: str, golds: tuple[str, ...]) -> Judgement:
        verdict, reason = rule_verdict(prediction, golds)
        return Judgement(verdict, reason, self.name)


# ---- the LLM judge -----------------------------------------------------------------------------------------


class JudgeCache:
    """SQLite file of decided verdicts, shared by processes (WAL) and threads (one connection, a lock)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        with self._lock, self._conn:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, verdict TEXT NOT NULL, "
                "reason TEXT NOT NULL, judge TEXT NOT NULL, created_at REAL NOT NULL)"
            )

    @staticmethod
    def key(question: str, prediction: str, golds: Sequence[str], model: str, prompt_version: str) -> str:
        payload = json.dumps([question, prediction, list(golds), model, prompt_version], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Judgement | None:
        with self._lock:
            row = self._conn.execute("SELECT verdict, reason, judge FROM judgements WHERE key = ?", (key,)).fetchone()
        return Judgement(row[0], row[1], row[2], cached=True) if row else None

    def put(self, key: str, judgement: Judgement) -> None:
        if judgement.verdict == "unknown":
            return  # a failure is not an answer: the next call asks again
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO judgements VALUES (?, ?, ?, ?, ?)",
                (key, judgement.verdict, judgement.reason, judgement.judge, time.time()),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class LLMJudge(Judge):
    """POST {base_url}/chat/completions (non-streaming, temperature 0) and parse the verdict."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        prompt: JudgePrompt = EVAL_PROMPT,
        api_key: str | None = None,
        cache: JudgeCache | None = None,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        retries: int = 3,
        max_tokens: int = 512,
        backoff_s: float = 1.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.prompt = prompt
        self.name = f"llm:{model}@{prompt.version}"
        self._api_key = api_key  # never described, logged or stored
        self.cache = cache
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        policy = HttpPolicy(
            timeout_s=timeout_s,
            connect_timeout_s=min(10.0, timeout_s),
            retries=retries,
            backoff_s=backoff_s,
            max_retry_wait_s=60.0,
        )
        self.http = HttpClient("judge", policy)
        self._semaphore: asyncio.Semaphore | None = None  # made on the background loop, the only one it serves

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "llm",
            "model": self.model,
            "prompt": self.prompt.name,
            "prompt_version": self.prompt.version,
            "base_url": self.base_url,
            "name": self.name,
        }

    async def judge(self, question: str, prediction: str | None, golds: Sequence[str]) -> Judgement:
        # Every request runs on the background loop: one HTTP client, one concurrency bound, whichever loop
        # (or thread, through judge_sync) the caller is on.
        loop = background_loop()
        if asyncio.get_running_loop() is loop:
            return await super().judge(question, prediction, golds)
        future = asyncio.run_coroutine_threadsafe(super().judge(question, prediction, golds), loop)
        return await asyncio.wrap_future(future)

    async def _judge(self, question: str, prediction: str, golds: tuple[str, ...]) -> Judgement:
        key = JudgeCache.key(question, prediction, golds, self.model, self.prompt.version)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        async with self._semaphore:
            judgement = await self._ask(question, prediction, golds)
        if self.cache is not None:
            self.cache.put(key, judgement)
        return judgement

    async def _ask(self, question: str, prediction: str, golds: tuple[str, ...]) -> Judgement:
        body = {
            "model": self.model,
            "messages": prompt_messages(self.prompt, question, prediction, golds),
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
            "stream": False,
        }
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        what = f"judge {self.base_url}"
        try:
            response = await self.http.request(
                "POST", f"{self.base_url}/chat/completions", json_body=body, headers=headers, what=what
            )
        except ToolError as exc:
            return Judgement("unknown", f"judge call failed: {exc.reason}", self.name)
        if response.status >= 400:
            detail = provider_message(response.body)
            return Judgement(
                "unknown", f"{what} answered HTTP {response.status}{': ' + detail if detail else ''}", self.name
            )
        try:
            data = json.loads(response.body)
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            excerpt = response.body[:120].decode("utf-8", errors="replace")
            return Judgement("unknown", f"{what}: not a chat completion: {excerpt!r}", self.name)
        content = message.get("content")
        if message.get("refusal") or (not content and choice.get("finish_reason") == "content_filter"):
            refusal = message.get("refusal") or "content filter"
            return Judgement("unknown", f"the judge refused: {str(refusal)[:REPLY_EXCERPT]}", self.name)
        if not isinstance(content, str):
            content = _text_parts(content)
        verdict, reason = parse_reply(content, self.prompt.name)
        return Judgement(verdict, reason, self.name)

    def close(self) -> None:
        if not _on_background_loop():
            run_sync(self.http.aclose())
        if self.cache is not None:
            self.cache.close()


def _text_parts(content: Any) -> str:
    """Text of a content given as a list of parts (some servers answer that way)."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def build_judge(cfg: JudgeConfig, environ: Mapping[str, str] | None = None) -> Judge:
    """The judge `cfg` describes; the key is read from JUDGE_API_KEY here and kept only inside the judge."""
    if cfg.kind == "rule":
        return RuleJudge()
    environ = os.environ if environ is None else environ
    prompt = load_prompt(cfg.judge_prompt, cfg.judge_prompts_file)
    return LLMJudge(
        cfg.judge_base_url,
        cfg.judge_model,
        prompt=prompt,
        api_key=environ.get(API_KEY_VAR) or None,
        cache=JudgeCache(cfg.judge_cache) if cfg.judge_cache else None,
        concurrency=cfg.judge_concurrency,
        timeout_s=cfg.judge_timeout_s,
        retries=cfg.judge_retries,
        max_tokens=cfg.judge_max_tokens,
    )
