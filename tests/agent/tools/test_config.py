"""ToolConfig: flag > env > default through agent.flags, the documented flags and variables, keys only from the env."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from agent.flags import add_config_arguments, config_from_args, describe_config
from agent.tools.config import ToolConfig


def parse(argv: list[str], environ: dict[str, str]) -> ToolConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, ToolConfig, title="tools")
    return config_from_args(ToolConfig, parser.parse_args(argv), environ=environ)


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


def test_every_field_has_help_and_the_flags_and_variables_the_readme_documents():
    rows = {r["name"]: r for r in describe_config(ToolConfig)}
    assert set(rows) == {f.name for f in dataclasses.fields(ToolConfig)} and all(r["help"] for r in rows.values())
    flags = {r["flag"] for r in rows.values()}
    for documented in DOCUMENTED_FLAGS:
        assert documented in flags, documented
    assert {r["env"] for r in rows.values() if r["env"]} == DOCUMENTED_VARIABLES
    assert parse(["--page-timeout", "3", "--tool-cache", "", "--rate-limit", "0"], {}).page_timeout_s == 3.0


DOCUMENTED_FLAGS = (
    "--text-search",
    "--image-search",
    "--summariser",
    "--summariser-base-url",
    "--summariser-model",
    "--top-k",
    "--candidates",
    "--fetch-pages",
    "--page-timeout",
    "--api-timeout",
    "--max-retry-wait",
    "--rate-limit",
    "--allow-private-fetch",
    "--allow-fetch-network",
    "--tool-cache",
    "--corpus",
    "--searxng-base-url",
    "--public-base-url",
    "--crop-dir",
    "--grounding-model",
    "--grounding-device",
    "--grounding-cpu-size",
)
DOCUMENTED_VARIABLES = {
    "TEXT_SEARCH",
    "IMAGE_SEARCH",
    "SUMMARISER",
    "SUMMARISER_BASE_URL",
    "SUMMARISER_MODEL",
    "ALLOW_PRIVATE_FETCH",
    "TOOL_CACHE",
    "LOCAL_CORPUS_PATH",
    "SERPAPI_BASE_URL",
    "SERPER_BASE_URL",
    "BRAVE_BASE_URL",
    "SEARXNG_BASE_URL",
    "CLOUD_VISION_BASE_URL",
    "PUBLIC_BASE_URL",
    "CROP_DIR",
    "GROUNDING_MODEL",
}


def test_environment_lists_and_booleans_parse_as_before():
    config = parse([], {"ALLOW_PRIVATE_FETCH": "yes", "TOOL_CACHE": " runs/x.db "})
    assert config.allow_private_fetch and config.cache_path == "runs/x.db"
    assert parse([], {"ALLOW_PRIVATE_FETCH": "0"}).allow_private_fetch is False


def test_api_keys_never_enter_the_config():
    config = parse([], {"SERPAPI_API_KEY": "secret-123"})
    assert "secret-123" not in repr(config) and "secret-123" not in repr(dataclasses.asdict(config))


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
