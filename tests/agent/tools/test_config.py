"""ToolConfig: flag > env > default, keys only from the environment, off reasons that say what to set."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from agent.tools.config import ToolConfig, add_tool_arguments, build_toolbox, tool_config_from_args


def parse(argv: list[str], environ: dict[str, str]) -> ToolConfig:
    parser = argparse.ArgumentParser()
    add_tool_arguments(parser)
    return tool_config_from_args(parser.parse_args(argv), environ)


def test_flags_override_env_which_overrides_defaults():
    env = {"SEARXNG_BASE_URL": "http://env:8888", "ALLOW_PRIVATE_FETCH": "1", "TEXT_SEARCH": "searxng"}
    assert parse([], {}) == ToolConfig()
    config = parse(
        [
            "--text-search",
            "local",
            "--corpus",
            "c.db",
            "--top-k",
            "3",
            "--no-fetch-pages",
            "--allow-fetch-network",
            "127.0.0.0/8",
        ],
        env,
    )
    assert (
        config.text_search == "local" and config.corpus_path == "c.db" and config.top_k == 3 and not config.fetch_pages
    )
    assert (
        config.searxng_base_url == "http://env:8888"
        and config.allow_private_fetch
        and config.allow_fetch_networks == ("127.0.0.0/8",)
    )
    assert parse(["--no-allow-private-fetch"], env).allow_private_fetch is False


def test_every_field_has_help_and_a_flag():
    parser = argparse.ArgumentParser()
    add_tool_arguments(parser)
    dests = {a.dest for a in parser._actions}
    for f in dataclasses.fields(ToolConfig):
        assert f.metadata["help"] and f.name in dests


def test_api_keys_never_enter_the_config():
    config = parse([], {"SERPAPI_API_KEY": "secret-123"})
    assert "secret-123" not in repr(config) and "secret-123" not in repr(dataclasses.asdict(config))


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


@pytest.mark.parametrize(
    "bad",
    [
        {"text_search": "bing"},
        {"top_k": 0},
        {"top_k": 6, "candidates": 5},
        {"allow_fetch_networks": ("x",)},
        {"box_threshold": 2.0},
    ],
)
def test_bad_values_fail_at_start_up(bad):
    with pytest.raises(ValueError):
        ToolConfig(**bad)


def test_openai_summariser_needs_url_and_model():
    with pytest.raises(ValueError, match="SUMMARISER_MODEL"):
        build_toolbox(ToolConfig(summariser="openai", summariser_base_url="http://x/v1", cache_path=""), environ={})
    with pytest.raises(ValueError, match="agent's loaded model"):
        build_toolbox(ToolConfig(summariser="model", cache_path=""), environ={})
