"""Which search tools episodes get, in words: for the start-up log and the Ask tab's settings.

The facts come from `agent.tools.wiring.plan_tools` (which builds nothing): each tool that is off has one line
naming the variable or flag that turns it on, the same line the CLI prints at the start of an episode.
"""

from __future__ import annotations

from agent.tools.wiring import ToolPlan
from ui.safe import md_text

SEARCH_TOOLS = (("text_search", "Text search"), ("image_search", "Image search"))


def both_searches_off(plan: ToolPlan) -> bool:
    return plan.text_search is None and plan.image_search is None


def startup_lines(plan: ToolPlan) -> list[str]:
    """What the app logs at start-up about its tools: nothing when both searches are on."""
    lines = [f"{name} is off: {plan.off_reasons.get(key, 'not configured')}" for key, name in _off(plan)]
    if both_searches_off(plan):
        lines.insert(0, "Both search tools are off: the model can only answer from what it already knows.")
    return lines


def tools_markdown(plan: ToolPlan) -> str:
    """The Ask tab's line about the tools: each search tool's provider, or why it is off and what to set."""
    if both_searches_off(plan):
        head = "⚠ **Both search tools are off**: the model can only answer from what it already knows."
    elif _off(plan):
        head = "⚠ **A search tool is off.**"
    else:
        return (
            f"Search tools: text search via **{md_text(plan.text_search or '')}**, image search via "
            f"**{md_text(plan.image_search or '')}**."
        )
    lines = [head]
    for key, name in SEARCH_TOOLS:
        provider = _providers(plan)[key]
        if provider is None:
            lines.append(f"- {name}: {md_text(plan.off_reasons.get(key, 'not configured'))}")
        else:
            lines.append(f"- {name}: via **{md_text(provider)}**")
    return "\n".join(lines)


def _providers(plan: ToolPlan) -> dict[str, str | None]:
    return {"text_search": plan.text_search, "image_search": plan.image_search}


def _off(plan: ToolPlan) -> list[tuple[str, str]]:
    return [(key, name) for key, name in SEARCH_TOOLS if _providers(plan)[key] is None]
