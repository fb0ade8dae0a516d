"""One way to turn a config dataclass into command-line flags, and the flags back into the config.

Every config in the project (budgets, model, tools, app, training, eval) declares its fields with `setting`:
a default, a help text and, where it applies, the environment variable that overrides the default and the
flag's own spelling. `add_config_arguments` makes one flag per field; `config_from_args` builds the config
with the precedence flag > environment variable > default. Unset flags stay None in the namespace, so a
caller can tell "not given" from "given the default".

A field may declare bounds (`low`, `high`, `low_exclusive`, and `sentinels` for values such as TRL's
`max_steps=-1` that stand outside them); `check_bounds(config)`, called from each config's `__post_init__`,
refuses a value outside them, or outside the field's closed set (`choices=` or `Literal[...]`), with a
message naming the flag. So the command line, environment variables (which argparse never sees), the app's
forms and code that builds a config directly all get the same check.

Types come from the field's annotation: `bool` becomes `--x/--no-x`, `tuple[T, ...]` a repeatable flag,
`Literal[...]` (or `choices=`) a closed set, and `T | None` a flag of type T. argparse has no dataclass
support of its own, and transformers' HfArgumentParser does not know environment variables or our groups.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

T = TypeVar("T")
TRUE_WORDS = ("1", "true", "yes", "on")


def setting(
    default: Any,
    help: str,
    *,
    env: str | None = None,
    choices: Sequence[str] | None = None,
    flag: str | None = None,
    metavar: str | None = None,
    low: float | None = None,
    high: float | None = None,
    low_exclusive: bool = False,
    sentinels: Sequence[float] = (),
) -> Any:
    """A dataclass field with the metadata `add_config_arguments` reads. Tuples become default factories.

    `low`/`high` bound a number (inclusive; `low_exclusive` makes `low` itself invalid); `sentinels` are values
    accepted outside the bounds because they mean something else (-1: "not set"). `check_bounds` enforces them."""
    meta = {
        "help": help,
        "env": env,
        "choices": tuple(choices) if choices else None,
        "flag": flag,
        "metavar": metavar,
        "low": low,
        "high": high,
        "low_exclusive": low_exclusive,
        "sentinels": tuple(sentinels),
    }
    if isinstance(default, tuple | list | dict):
        frozen = tuple(default) if isinstance(default, list) else default
        return dataclasses.field(default_factory=lambda: frozen, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _bound_problem(f: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with `value` against the field's bounds ("must be above 0, not -1"), or None.
    None values (an optional field left unset), booleans and non-numbers are not bounded."""
    meta = f.metadata
    low, high = meta.get("low"), meta.get("high")
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value in meta.get("sentinels", ()) or (low is None and high is None):
        return None
    if math.isnan(value):
        return "must be a number, not nan"
    also = "".join(f" or {_number(s)}" for s in meta.get("sentinels", ()))
    if low is not None and (value <= low if meta.get("low_exclusive") else value < low):
        word = "above" if meta.get("low_exclusive") else "at least"
        return f"must be {word} {_number(low)}{also}, not {_number(value)}"
    if high is not None and value > high:
        return f"must be at most {_number(high)}{also}, not {_number(value)}"
    return None


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _choice_problem(cls: type, f: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with `value` against the field's closed set ("must be one of a, b, not 'c'"), or None.
    None (an optional field left unset) is not checked; each value of a repeatable field is."""
    _, repeatable, literal = _field_type(cls, f)
    choices = f.metadata.get("choices") or literal
    if not choices or value is None:
        return None
    for one in value if repeatable else (value,):
        if one not in choices:
            return f"must be one of {', '.join(map(str, choices))}, not {one!r}"
    return None


def check_bounds(config: object) -> None:
    """Raise ValueError naming the flag ("--learning-rate must be above 0, not -1", "--backend must be one of
    transformers, openai, not 'tgi'") for the first field of the dataclass instance `config` whose value lies
    outside the bounds or the choices its `setting` (or its `Literal` type) declares."""
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        problem = _bound_problem(f, value) or _choice_problem(type(config), f, value)
        if problem:
            raise ValueError(f"{flag_name(f)} {problem}")


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    # Resolved once per class: check_bounds runs on every construction of a config.
    return typing.get_type_hints(cls)


def _field_type(cls: type, f: dataclasses.Field) -> tuple[Any, bool, tuple[Any, ...] | None]:
    """(base type, repeatable, literal choices) of a field, with `X | None` unwrapped."""
    hint = _type_hints(cls)[f.name]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else str
        origin = typing.get_origin(hint)
    repeatable = False
    if origin is tuple:
        repeatable = True
        hint = typing.get_args(hint)[0]
        origin = typing.get_origin(hint)
    if origin is Literal:
        values = typing.get_args(hint)
        return type(values[0]), repeatable, values
    return hint, repeatable, None


def _help(f: dataclasses.Field) -> str:
    meta = f.metadata
    if "help" not in meta:
        raise TypeError(f"config field {f.name!r} has no help text: declare it with agent.flags.setting")
    env = f" [{meta['env']}]" if meta.get("env") else ""
    default = field_default(f)
    shown = "" if default in (None, "", ()) else f" (default: {default})"
    # argparse treats % as a format character in help texts
    return (meta["help"] + env + shown).replace("%", "%%")


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    title: str | None = None,
    description: str | None = None,
    exclude: Sequence[str] = (),
) -> None:
    """One flag per field of the dataclass `cls`, in a group called `title` when given."""
    target = parser.add_argument_group(title, description) if title else parser
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init:
            continue
        base, repeatable, literal = _field_type(cls, f)
        choices = f.metadata.get("choices") or literal
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": _help(f)}
        if f.metadata.get("metavar"):
            kwargs["metavar"] = f.metadata["metavar"]
        if base is bool and not repeatable:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = base if base in (int, float, str) else str
            if choices:
                kwargs["choices"] = choices
            if repeatable:
                kwargs["action"] = "append"
        target.add_argument(flag_name(f), **kwargs)


def parse_env_value(cls: type, f: dataclasses.Field, text: str) -> Any:
    """An environment variable's text as the field's type (tuples are comma-separated)."""
    base, repeatable, _ = _field_type(cls, f)
    if repeatable:
        return tuple(base(part.strip()) for part in text.split(",") if part.strip())
    if base is bool:
        return text.strip().lower() in TRUE_WORDS
    return base(text.strip()) if base in (int, float) else text.strip()


def config_from_args(
    cls: type[T],
    args: argparse.Namespace | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> T:
    """Build `cls` from flags, then environment variables, then defaults; `overrides` win over all three."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        value = getattr(args, f.name, None) if args is not None else None
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
            continue
        var = f.metadata.get("env")
        if var and environ.get(var, "").strip():
            values[f.name] = parse_env_value(cls, f, environ[var])
    values.update(overrides)
    return cls(**values)


def describe_config(cls: type) -> list[dict[str, Any]]:
    """Each field's name, flag, default, help, env var, choices and bounds: for forms and docs built from a config."""
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        base, repeatable, literal = _field_type(cls, f)
        rows.append(
            {
                "name": f.name,
                "flag": flag_name(f),
                "type": base.__name__ if isinstance(base, type) else str(base),
                "repeatable": repeatable,
                "default": field_default(f),
                "help": f.metadata.get("help", ""),
                "env": f.metadata.get("env"),
                "choices": f.metadata.get("choices") or literal,
                "low": f.metadata.get("low"),
                "high": f.metadata.get("high"),
                "low_exclusive": f.metadata.get("low_exclusive", False),
                "sentinels": f.metadata.get("sentinels", ()),
            }
        )
    return rows
