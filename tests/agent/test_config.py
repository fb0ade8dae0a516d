"""agent/config.py: the model config and the episode flags (model, budgets, tools) through agent.flags."""

from __future__ import annotations

import argparse

import pytest

from agent.config import ModelConfig, add_episode_arguments
from agent.flags import config_from_args, describe_config
from agent.loop import Budgets
from agent.tools.config import ToolConfig


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_episode_arguments(parser)  # raises on a field without help, or on two configs claiming one flag
    return parser.parse_args(argv)


@pytest.mark.parametrize("cls", [ModelConfig, Budgets, ToolConfig])
def test_every_field_of_every_episode_config_has_a_help_text(cls):
    assert all(row["help"].strip() for row in describe_config(cls))


def test_the_flags_users_know_keep_their_spelling():
    args = parse(
        ["--model", "m", "--backend", "openai", "--base-url", "http://h/v1", "--max-tool-calls", "3"]
        + [
            "--tool-cache",
            "",
            "--corpus",
            "c.db",
            "--page-timeout",
            "2",
            "--max-pixels",
            "1000",
            "--dialect",
            "mmsearch-r1",
        ]
    )
    model = config_from_args(ModelConfig, args, environ={})
    assert (model.model, model.backend, model.base_url, model.max_pixels, model.dialect) == (
        "m",
        "openai",
        "http://h/v1",
        1000,
        "mmsearch-r1",
    )
    assert config_from_args(Budgets, args, environ={}).max_tool_calls == 3
    tools = config_from_args(ToolConfig, args, environ={})
    assert (tools.cache_path, tools.corpus_path, tools.page_timeout_s) == ("", "c.db", 2.0)


def test_openai_base_url_is_read_when_no_flag_is_given():
    env = {"OPENAI_BASE_URL": "http://env:9000/v1"}
    assert config_from_args(ModelConfig, parse([]), environ=env).base_url == "http://env:9000/v1"
    assert (
        config_from_args(ModelConfig, parse(["--base-url", "http://flag/v1"]), environ=env).base_url == "http://flag/v1"
    )
    assert config_from_args(ModelConfig, parse([]), environ={}) == ModelConfig()


def test_bad_values_are_refused_with_a_clear_message():
    with pytest.raises(SystemExit):
        parse(["--backend", "tgi"])
    with pytest.raises(ValueError, match="--max-tool-calls must be at least 0, not -1"):
        config_from_args(Budgets, parse(["--max-tool-calls", "-1"]), environ={})
