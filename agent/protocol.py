"""The turn protocol: dialects, the turn parser, tool-result rendering and the format check (DESIGN.md §3.2).

A dialect owns everything model-facing that differs between DeepMMSearch-R1 and MMSearch-R1: prompts,
tag names, how an assistant turn parses into reason + action, how a tool result becomes the next user
turn, and s_fmt. The episode loop, eval and training all go through this module, so there is one
definition of "a well-formed turn" in the project.

`parse_turn` never raises on model output: anything malformed returns `format_ok=False`, action `none`
and a one-line `error`.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.events import ActionKind, ToolKind, ToolResult

# 8192 response tokens are at most a few tens of kB of text; anything far beyond is not a real turn, and
# refusing it up front keeps the parser's cost bounded for hostile or runaway inputs.
MAX_TURN_CHARS = 200_000
GIVE_UP_ANSWER = "Unable to answer due to lack of relevant information"
WHOLE_IMAGE_MARK = "<img>"


@dataclass(frozen=True)
class ParsedTurn:
    reason: str
    action: ActionKind
    argument: str
    format_ok: bool
    error: str | None = None


@dataclass(frozen=True)
class Prompts:
    """Every model-facing sentence of a dialect. Placeholders: {question}, {max_tool_calls}, {error}."""

    system: str
    user: str
    after_text_search: str
    after_image_search: str
    format_error: str
    image_budget_spent: str
    tool_budget_spent: str
    last_tool_call: str

    def with_overrides(self, overrides: dict[str, Any]) -> Prompts:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(
                f"unknown prompt keys {sorted(unknown)}; known: {[f.name for f in dataclasses.fields(self)]}"
            )
        bad = [k for k, v in overrides.items() if not isinstance(v, str)]
        if bad:
            raise ValueError(f"prompt overrides must be strings: {bad}")
        return dataclasses.replace(self, **overrides)


DEEPMMSEARCH_PROMPTS = Prompts(
    system=(
        "You are a research assistant who answers questions about an image, searching the web when your own "
        "knowledge is not enough.\n\n"
        "Work in turns. Each turn begins with your reasoning inside <reason> and </reason>, followed by exactly "
        "one action and nothing after it:\n"
        "- <text_search>query</text_search>: search the web. Write a specific, self-contained query.\n"
        "- <img_search>referring expression</img_search>: locate the described part of the image (for example "
        '"the logo on the player\'s shirt"), crop it and run a reverse image search on the crop. Use it when '
        "one object or region matters.\n"
        "- <img_search><img></img_search>: run a reverse image search on the whole image.\n"
        "- <answer>final answer</answer>: give a short final answer and stop.\n\n"
        "Results come back inside <information> and </information>. You may search with an image at most once "
        "and call tools at most {max_tool_calls} times. If the information is not enough, answer "
        f'"{GIVE_UP_ANSWER}".'
    ),
    user="Question: {question}",
    after_image_search=(
        "Use what the image search identified. If it is enough, answer; otherwise search the web with text."
    ),
    after_text_search=(
        "If this answers the question, give the answer. Otherwise refine your query and search again, or "
        f'answer "{GIVE_UP_ANSWER}".'
    ),
    format_error=(
        "Your last turn did not follow the required format ({error}). Write <reason>...</reason> followed by "
        "exactly one action tag, with nothing after it."
    ),
    image_budget_spent="You have already used your one image search. Search with text or answer.",
    tool_budget_spent="You have used all {max_tool_calls} tool calls. Answer now with <answer>...</answer>.",
    last_tool_call="That was your last tool call: answer in your next turn.",
)

MMSEARCH_R1_PROMPTS = Prompts(
    system="You are a helpful assistant.",
    user=(
        "Answer the question about the image. First reason inside <reason> and </reason>. Then take exactly one "
        "action: if you need to identify what the image shows, write <search><img></search> (image search is "
        "only available in this first round); if you need facts from the web, write "
        "<text_search>query</text_search>; if you can answer, write <answer>answer</answer>. Search results "
        "come back inside <information> and </information>.\nQuestion: {question}"
    ),
    after_image_search=(
        "Reason about the image search results. Then answer with <answer>...</answer>, or search the web with "
        "<text_search>query</text_search> if you still need facts."
    ),
    after_text_search=(
        "Reason about the search results. Then answer with <answer>...</answer>, or refine your query with "
        "<text_search>query</text_search>."
    ),
    format_error=(
        "Your last turn did not follow the required format ({error}). Write <reason>...</reason> followed by "
        "exactly one action."
    ),
    image_budget_spent="Image search is only available in the first round. Search with text or answer.",
    tool_budget_spent="You have used all {max_tool_calls} searches. Answer now with <answer>...</answer>.",
    last_tool_call="That was your last search: answer in your next turn.",
)


@dataclass(frozen=True)
class Dialect:
    """Tag names, prompts and rendering rules of one protocol family."""

    name: str
    prompts: Prompts
    image_tag: str  # the tag whose content is a referring expression or the <img> mark
    allows_region_search: bool
    image_search_first_turn_only: bool
    results_prefix: str  # text before <information> in a tool-result turn
    repeat_question: bool  # MMSearch-R1 repeats the question after results

    @property
    def action_tags(self) -> tuple[str, ...]:
        return ("text_search", self.image_tag, "answer")

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        """Generation stops right after an action closes: the turn is complete there."""
        return tuple(f"</{t}>" for t in self.action_tags)

    def close_unterminated_action(self, text: str) -> str:
        """Re-append the closing tag a server stripped as a stop string.

        vLLM and OpenAI drop the matched stop string from the output; when the text ends inside an opened
        action tag that is exactly what happened, so the tag is restored before parsing.
        """
        last_open = None
        for match in _tag_re(self).finditer(text):
            last_open = match if not match.group(1) and match.group(2) in self.action_tags else None
        if last_open is not None and text[last_open.end() :].strip():
            return text + f"</{last_open.group(2)}>"
        return text

    def with_prompts_file(self, path: str | Path) -> Dialect:
        """A copy whose prompts are overridden by a TOML file of `key = "text"` lines (keys of `Prompts`)."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read prompts file {path}: {exc}") from exc
        return dataclasses.replace(self, prompts=self.prompts.with_overrides(data))

    # ---- model-facing text ----------------------------------------------------------------------

    def system_prompt(self, max_tool_calls: int) -> str:
        return self.prompts.system.format(max_tool_calls=max_tool_calls)

    def user_prompt(self, question: str) -> str:
        return self.prompts.user.replace("{question}", question)

    def render_information(self, result: ToolResult) -> str:
        """The text inside <information>: the summary when there is one, else numbered results."""
        if result.error is not None:
            return f"The search failed ({result.provider}): {result.error}"
        parts = []
        if result.grounding_fallback:
            parts.append(f"Note: {result.grounding_note or 'the region was not found'}; the whole image was searched.")
        if result.summary:
            parts.append(result.summary)
        elif result.items:
            for i, item in enumerate(result.items, 1):
                line = f"{i}. {item.title}"
                if item.snippet:
                    line += f": {item.snippet}"
                if item.url:
                    line += f" ({item.url})"
                parts.append(line)
        else:
            parts.append("No results were found.")
        # The model must never see our delimiters inside results, or web text could fake a turn boundary.
        return _neutralise_tags("\n".join(parts))

    def render_tool_turn(self, kind: ToolKind, information: str, question: str, note: str = "") -> str:
        """The next user turn after a tool call."""
        instruction = self.prompts.after_text_search if kind == "text_search" else self.prompts.after_image_search
        text = f"{self.results_prefix}<information>{information}</information>\n"
        if self.repeat_question:
            text += f"Question: {question}\n"
        text += instruction
        if note:
            text += "\n" + note
        return text

    def render_format_error(self, error: str) -> str:
        return self.prompts.format_error.replace("{error}", error)

    # ---- parsing --------------------------------------------------------------------------------

    def parse_turn(self, text: str) -> ParsedTurn:
        try:
            return _parse(self, text)
        except Exception as exc:  # the contract is "never raises": a parser bug becomes a format error
            return _bad(f"parser failure: {type(exc).__name__}")

    def format_ok(self, turns: Sequence[str]) -> bool:
        """s_fmt: 1 when every assistant turn follows the tag schema and the last one answers."""
        if not turns:
            return False
        parsed = [self.parse_turn(t) for t in turns]
        return all(p.format_ok for p in parsed) and parsed[-1].action == "answer"

    # ---- training-facing view ------------------------------------------------------------------

    def parse_response(self, text: str) -> dict[str, Any]:
        """An assistant message in the chat-with-tools layout TRL's `parse_response` produces.

        The tag protocol is the wire format; this is the same turn as structured data so that trainers'
        tool loops (tool_calls / tool messages) can drive our dialect without a second parser.
        """
        turn = self.parse_turn(text)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if turn.format_ok and turn.action in ("text_search", "image_search_region", "image_search_whole"):
            arguments = {"query": turn.argument} if turn.action != "image_search_whole" else {}
            message["tool_calls"] = [{"type": "function", "function": {"name": turn.action, "arguments": arguments}}]
        return message


def _neutralise_tags(text: str) -> str:
    return text.replace("<", "‹").replace(">", "›")


def _bad(error: str, reason: str = "") -> ParsedTurn:
    return ParsedTurn(reason=reason, action="none", argument="", format_ok=False, error=error)


_TAG_RES: dict[str, re.Pattern[str]] = {}


def _tag_re(dialect: Dialect) -> re.Pattern[str]:
    pattern = _TAG_RES.get(dialect.name)
    if pattern is None:
        names = sorted(
            {"reason", "information", "img", "search", "img_search", *dialect.action_tags}, key=len, reverse=True
        )
        pattern = re.compile(r"<(/?)(" + "|".join(names) + r")>")
        _TAG_RES[dialect.name] = pattern
    return pattern


def _parse(dialect: Dialect, text: str) -> ParsedTurn:
    if not isinstance(text, str):
        return _bad(f"turn is {type(text).__name__}, not text")
    if len(text) > MAX_TURN_CHARS:
        return _bad(f"turn is {len(text)} characters, over the {MAX_TURN_CHARS} limit")
    body = text.strip()
    if not body:
        return _bad("empty turn")
    tags = list(_tag_re(dialect).finditer(body))
    if not tags:
        return _bad("no tags: expected <reason>...</reason> and an action")
    first = tags[0]
    if first.group(1) or first.group(2) != "reason":
        if not first.group(1) and first.group(2) in dialect.action_tags:
            return _bad(f"action <{first.group(2)}> before <reason>")
        return _bad(f"turn must begin with <reason>, found {first.group(0)}")
    if first.start() != 0:
        return _bad("text before <reason>")
    if len(tags) < 2:
        return _bad("unclosed <reason>")
    close = tags[1]
    if close.group(0) != "</reason>":
        return _bad(
            f"{close.group(0)} inside <reason>" if not close.group(1) else f"unexpected {close.group(0)} in <reason>"
        )
    reason = body[first.end() : close.start()].strip()
    if not reason:
        return _bad("empty <reason>")
    if len(tags) < 3:
        return _bad("no action after </reason>", reason)
    opener = tags[2]
    name = opener.group(2)
    if opener.group(1) or name not in dialect.action_tags:
        return _bad(f"expected an action after </reason>, found {opener.group(0)}", reason)
    if body[close.end() : opener.start()].strip():
        return _bad("text between </reason> and the action", reason)
    rest = tags[3:]
    closer_index = next((i for i, t in enumerate(rest) if t.group(0) == f"</{name}>"), None)
    if closer_index is None:
        return _bad(f"unclosed <{name}>", reason)
    inner_tags = rest[:closer_index]
    closer = rest[closer_index]
    argument = body[opener.end() : closer.start()]
    after = rest[closer_index + 1 :]
    if after:
        if any(not t.group(1) and t.group(2) in dialect.action_tags for t in after):
            return _bad("more than one action in the turn", reason)
        return _bad(f"text after the action ({after[0].group(0)})", reason)
    if body[closer.end() :].strip():
        return _bad("text after the action", reason)

    if name == dialect.image_tag:
        if [t.group(0) for t in inner_tags] == [WHOLE_IMAGE_MARK] and argument.strip() == WHOLE_IMAGE_MARK:
            return ParsedTurn(reason, "image_search_whole", "", True)
        if inner_tags:
            return _bad(f"unexpected {inner_tags[0].group(0)} inside <{name}>", reason)
        if not dialect.allows_region_search:
            return _bad(f"<{name}> takes only <img> in the {dialect.name} dialect", reason)
        expression = argument.strip()
        if not expression:
            return _bad(f"empty <{name}>", reason)
        return ParsedTurn(reason, "image_search_region", expression, True)
    if inner_tags:
        return _bad(f"{inner_tags[0].group(0)} inside <{name}>", reason)
    value = argument.strip()
    if not value:
        return _bad("empty query" if name == "text_search" else f"empty <{name}>", reason)
    return ParsedTurn(reason, "answer" if name == "answer" else "text_search", value, True)


DIALECTS: dict[str, Dialect] = {
    "deepmmsearch": Dialect(
        name="deepmmsearch",
        prompts=DEEPMMSEARCH_PROMPTS,
        image_tag="img_search",
        allows_region_search=True,
        image_search_first_turn_only=False,
        results_prefix="",
        repeat_question=False,
    ),
    "mmsearch-r1": Dialect(
        name="mmsearch-r1",
        prompts=MMSEARCH_R1_PROMPTS,
        image_tag="search",
        allows_region_search=False,
        image_search_first_turn_only=True,
        results_prefix="Searched results: ",
        repeat_question=True,
    ),
}


def get_dialect(name: str | Dialect, prompts_file: str | Path | None = None) -> Dialect:
    if isinstance(name, Dialect):
        dialect = name
    else:
        try:
            dialect = DIALECTS[name]
        except KeyError:
            raise ValueError(f"unknown dialect {name!r}; choose one of {sorted(DIALECTS)}") from None
    return dialect.with_prompts_file(prompts_file) if prompts_file else dialect


def parse_turn(text: str, dialect: str | Dialect = "deepmmsearch") -> ParsedTurn:
    """Parse one assistant turn. Never raises: malformed output gives format_ok=False and a reason."""
    try:
        resolved = get_dialect(dialect)
    except ValueError as exc:
        return _bad(str(exc))
    return resolved.parse_turn(text)
