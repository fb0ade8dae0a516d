"""agent.flags: one flag per config field, precedence flag > environment > default."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

import pytest

from agent.flags import add_config_arguments, check_bounds, config_from_args, describe_config, setting


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


@dataclass(frozen=True)
class Bounded:
    rate: float = setting(0.1, "a learning rate", low=0.0, low_exclusive=True)
    share: float = setting(0.5, "a share", low=0.0, high=1.0)
    workers: int = setting(4, "workers", low=1, high=64, flag="--jobs")
    steps: int = setting(-1, "steps (-1: until done)", low=1, sentinels=(-1,))
    limit: int | None = setting(None, "an optional limit", low=1)

    def __post_init__(self) -> None:
        check_bounds(self)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rate": 0.0}, "--rate must be above 0, not 0"),
        ({"rate": -1.0}, "--rate must be above 0, not -1"),
        ({"share": -0.5}, "--share must be at least 0, not -0.5"),
        ({"share": 1.5}, "--share must be at most 1, not 1.5"),
        ({"workers": 0}, "--jobs must be at least 1, not 0"),
        ({"workers": 65}, "--jobs must be at most 64, not 65"),
        ({"steps": 0}, "--steps must be at least 1 or -1, not 0"),
        ({"steps": -2}, "--steps must be at least 1 or -1, not -2"),
        ({"limit": 0}, "--limit must be at least 1, not 0"),
        ({"rate": float("nan")}, "--rate must be a number, not nan"),
    ],
)
def test_values_outside_a_fields_bounds_are_refused_naming_the_flag(values, message):
    with pytest.raises(ValueError) as caught:
        Bounded(**values)
    assert str(caught.value) == message


def test_bounds_are_inclusive_unless_exclusive_and_sentinels_and_none_pass():
    assert Bounded(share=0.0).share == 0.0 and Bounded(share=1.0).share == 1.0
    assert Bounded(workers=1).workers == 1 and Bounded(workers=64).workers == 64
    assert Bounded(steps=-1).steps == -1 and Bounded(steps=1).steps == 1
    assert Bounded(limit=None).limit is None and Bounded(rate=1e-9).rate == 1e-9


def test_flags_and_environment_values_are_checked_against_the_bounds():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Bounded)
    with pytest.raises(ValueError, match="--jobs must be at most 64, not 100"):
        config_from_args(Bounded, parser.parse_args(["--jobs", "100"]), environ={})


def test_describe_config_lists_the_bounds():
    rows = {r["name"]: r for r in describe_config(Bounded)}
    assert (rows["rate"]["low"], rows["rate"]["high"], rows["rate"]["low_exclusive"]) == (0.0, None, True)
    assert (rows["share"]["low"], rows["share"]["high"], rows["share"]["low_exclusive"]) == (0.0, 1.0, False)
    assert rows["steps"]["sentinels"] == (-1,) and rows["limit"]["low"] == 1
    assert rows["steps"]["low"] == 1 and rows["rate"]["sentinels"] == ()


@dataclass(frozen=True)
class Chosen:
    mode: Literal["fast", "slow"] = setting("fast", "which mode", env="CHOSEN_MODE")
    judge: str | None = setting(None, "a judge", choices=("rule", "llm"))
    tags: tuple[str, ...] = setting((), "tags", choices=("a", "b"))

    def __post_init__(self) -> None:
        check_bounds(self)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "medium"}, "--mode must be one of fast, slow, not 'medium'"),
        ({"judge": "human"}, "--judge must be one of rule, llm, not 'human'"),
        ({"tags": ("a", "c")}, "--tags must be one of a, b, not 'c'"),
    ],
)
def test_values_outside_a_fields_choices_are_refused_naming_the_flag(values, message):
    with pytest.raises(ValueError) as caught:
        Chosen(**values)
    assert str(caught.value) == message


def test_choices_pass_their_values_and_an_unset_optional_and_bind_environment_values_too():
    assert Chosen(mode="slow", judge="llm", tags=("b", "a")) == Chosen("slow", "llm", ("b", "a"))
    assert Chosen().judge is None
    with pytest.raises(ValueError, match="--mode must be one of fast, slow, not 'medium'"):
        config_from_args(Chosen, environ={"CHOSEN_MODE": "medium"})
