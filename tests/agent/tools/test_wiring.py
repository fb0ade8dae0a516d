"""Tool wiring: which provider each tool gets, why a tool is off (naming what to set), and the toolbox."""

from __future__ import annotations

import pytest

from agent.tools.config import ToolConfig
from agent.tools.wiring import build_toolbox, plan_tools


def test_missing_keys_turn_tools_off_with_the_variable_to_set():
    box = build_toolbox(
        ToolConfig(text_search="serpapi", image_search="cloud_vision", cache_path="", grounding_model="off"), environ={}
    )
    assert box.text_search is None and "SERPAPI_API_KEY is not set" in box.off_reasons["text_search"]
    assert box.image_search is None and "CLOUD_VISION_API_KEY is not set" in box.off_reasons["image_search"]
    assert "grounding is off" in box.off_reasons["grounding"]


def test_auto_picks_the_first_configured_provider():
    env = {"SERPER_API_KEY": "k", "CLOUD_VISION_API_KEY": "k"}
    box = build_toolbox(ToolConfig(searxng_base_url="http://s", cache_path=""), environ=env)
    assert box.text_search.provider == "serper" and box.image_search.provider == "cloud_vision"
    assert box.grounder.name == "grounding-dino:IDEA-Research/grounding-dino-tiny"  # not loaded until used
    nothing = build_toolbox(ToolConfig(cache_path=""), environ={})
    assert (
        "SEARXNG_BASE_URL" in nothing.off_reasons["text_search"]
        and "PUBLIC_BASE_URL" in nothing.off_reasons["image_search"]
    )


def test_lens_needs_a_public_base_url():
    box = build_toolbox(ToolConfig(image_search="serpapi", cache_path=""), environ={"SERPAPI_API_KEY": "k"})
    assert box.image_search is None and "PUBLIC_BASE_URL is not set" in box.off_reasons["image_search"]
    box = build_toolbox(
        ToolConfig(image_search="auto", public_base_url="https://x", cache_path=""), environ={"SERPAPI_API_KEY": "k"}
    )
    assert box.image_search.provider == "serpapi"


def test_replay_without_a_cache_is_off():
    box = build_toolbox(ToolConfig(text_search="replay", image_search="replay", cache_path=""), environ={})
    assert "replay needs the tool cache" in box.off_reasons["text_search"]


def test_openai_summariser_needs_url_and_model():
    with pytest.raises(ValueError, match="SUMMARISER_MODEL"):
        build_toolbox(ToolConfig(summariser="openai", summariser_base_url="http://x/v1", cache_path=""), environ={})
    with pytest.raises(ValueError, match="agent's loaded model"):
        build_toolbox(ToolConfig(summariser="model", cache_path=""), environ={})


def test_plan_names_each_tool_that_is_off_and_the_variable_that_turns_it_on(tmp_path):
    cache = tmp_path / "never-created.db"
    plan = plan_tools(ToolConfig(cache_path=str(cache), grounding_model="off"), environ={})
    assert (plan.text_search, plan.image_search, plan.grounding) == (None, None, None)
    assert (
        "SERPAPI_API_KEY" in plan.off_reasons["text_search"] and "SEARXNG_BASE_URL" in plan.off_reasons["text_search"]
    )
    assert "CLOUD_VISION_API_KEY" in plan.off_reasons["image_search"]
    assert "GROUNDING_MODEL" in plan.off_reasons["grounding"]
    assert not cache.exists()  # planning builds nothing, not even the cache file
    on = plan_tools(ToolConfig(cache_path=""), environ={"BRAVE_API_KEY": "k", "CLOUD_VISION_API_KEY": "k"})
    assert (on.text_search, on.image_search, on.off_reasons) == ("brave", "cloud_vision", {})


@pytest.mark.parametrize(
    "config,environ",
    [
        (ToolConfig(cache_path=""), {}),
        (ToolConfig(text_search="local", corpus_path="c.db", cache_path="", grounding_model="off"), {}),
        (ToolConfig(text_search="replay", image_search="replay", cache_path=""), {}),
        (ToolConfig(image_search="serpapi", public_base_url="https://x", cache_path=""), {"SERPAPI_API_KEY": "k"}),
        (ToolConfig(text_search="searxng", image_search="cloud_vision", cache_path=""), {"CLOUD_VISION_API_KEY": "k"}),
    ],
)
def test_the_toolbox_is_what_the_plan_says(config, environ):
    plan, box = plan_tools(config, environ), build_toolbox(config, environ=environ)
    assert box.off_reasons == plan.off_reasons
    assert (box.text_search.provider if box.text_search else None) == plan.text_search
    assert (box.image_search.provider if box.image_search else None) == plan.image_search
    assert (box.grounder is not None) == (plan.grounding is not None)
