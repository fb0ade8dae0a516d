"""agent.flags: one flag per config field, precedence flag > environment > default."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

import pytest

from agent.flags import add_config_arguments, config_from_args, describe_config, setting


@dataclass(frozen=True)
class Demo:
    steps: int = setting(3, "how many steps")
    rate: float = setting(0.5, "a rate in %", env="DEMO_RATE")
    mode: Literal["fast", "slow"] = setting("fast", "which mode")
    name: str = setting("", "a name", env="DEMO_NAME", flag="--demo-name")
    device: str | None = setting(None, "a device")
    limit: int | None = setting(None, "an optional limit")
    verbose: bool = setting(False, "say more", env="DEMO_VERBOSE")
    networks: tuple[str, ...] = setting((), "repeatable networks")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Demo, title="demo")
    return parser.parse_args(argv)


def test_flags_are_typed_from_annotations():
    args = parse(
        [
            "--steps",
            "7",
            "--rate",
            "0.25",
            "--mode",
            "slow",
            "--limit",
            "4",
            "--verbose",
            "--networks",
            "a",
            "--networks",
            "b",
        ]
    )
    cfg = config_from_args(Demo, args, environ={})
    assert cfg == Demo(steps=7, rate=0.25, mode="slow", limit=4, verbose=True, networks=("a", "b"))


def test_unset_flags_fall_back_to_environment_then_default():
    cfg = config_from_args(Demo, parse([]), environ={"DEMO_RATE": "0.75", "DEMO_VERBOSE": "yes", "DEMO_NAME": " x "})
    assert (cfg.rate, cfg.verbose, cfg.name, cfg.steps) == (0.75, True, "x", 3)


def test_flag_wins_over_environment_and_overrides_win_over_flags():
    cfg = config_from_args(
        Demo, parse(["--rate", "0.1", "--no-verbose"]), environ={"DEMO_RATE": "0.9", "DEMO_VERBOSE": "1"}
    )
    assert (cfg.rate, cfg.verbose) == (0.1, False)
    assert config_from_args(Demo, parse(["--steps", "2"]), environ={}, steps=9).steps == 9


def test_literal_choices_are_enforced_and_custom_flag_names_used():
    with pytest.raises(SystemExit):
        parse(["--mode", "medium"])
    assert parse(["--demo-name", "n"]).name == "n"


def test_a_field_without_help_is_refused():
    @dataclass(frozen=True)
    class Bare:
        x: int = 1

    with pytest.raises(TypeError, match="no help text"):
        add_config_arguments(argparse.ArgumentParser(), Bare)


def test_describe_config_lists_every_field_for_forms():
    rows = {r["name"]: r for r in describe_config(Demo)}
    assert rows["mode"]["choices"] == ("fast", "slow")
    assert rows["networks"]["repeatable"] and rows["device"]["type"] == "str"
    assert rows["rate"]["env"] == "DEMO_RATE" and rows["steps"]["default"] == 3
