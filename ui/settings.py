"""The app's configuration (flags and env, DESIGN.md §3.7) and the rules of the per-session settings panel.

`AppConfig` is what `python app.py` runs with: the app's own settings, declared with agent.flags.setting
(flag > environment variable > default), and the launch configurations of the model, the tools and the
budgets, whose flags come from their own classes (agent.config.add_episode_arguments). The settings panel
edits a copy per browser session; `resolve_settings` turns the panel's values into the configs one episode
runs with, or raises a readable error. Secrets never appear here: API keys stay in the server's environment.

Safe by default when public: on a Hugging Face Space, and wherever the app listens beyond loopback without a
login, visitors cannot change the model, the endpoints or the providers (`--unlock-settings` allows it, with a
warning at start-up). Wherever the app listens beyond loopback, an endpoint a visitor types is checked as a
page fetch is (ui.exposure).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.config import ModelConfig, add_episode_arguments
from agent.flags import add_config_arguments, check_bounds, config_from_args, setting
from agent.loop import Budgets
from agent.protocol import DIALECTS
from agent.tools.config import ToolConfig
from traces.cli import DEFAULT_DB  # one default for the app and `python -m traces`
from ui.errors import UserFacingError
from ui.exposure import check_visitor_endpoint, loopback_only

DEFAULT_LABELS = (
    "good_reasoning",
    "bad_query",
    "wrong_crop",
    "needless_search",
    "hallucination",
    "should_give_up",
    "format_issue",
    "tool_failure",
    "other",
)

# Settings-panel fields, by the names of the config fields they change.
MODEL_FIELDS = ("model", "backend", "base_url", "dialect")
TOOL_FIELDS = (
    "text_search",
    "image_search",
    "summariser_base_url",
    "summariser_model",
    "grounding_model",
    "box_threshold",
    "text_threshold",
)
BUDGET_FIELDS = ("max_image_searches", "max_tool_calls", "max_response_tokens", "max_turns")
THRESHOLD_FIELDS = ("box_threshold", "text_threshold")
# What the server dials for a field a visitor may type, and how the page names it.
ENDPOINT_FIELDS = {"base_url": "model endpoint", "summariser_base_url": "summariser endpoint"}
# Fields that are not flags: the launch configs have flags of their own; the rest come from the environment.
NOT_FLAGS = ("model", "tools", "budgets", "space_id", "oauth")


@dataclass(frozen=True)
class AppConfig:
    """What `python app.py` runs with. Flags for the app's own fields via agent.flags (group "app")."""

    # What episodes start from; the settings panel edits copies. Their flags are their own classes'.
    model: ModelConfig = setting(ModelConfig(), "the model episodes start with (flags: group model)")
    tools: ToolConfig = setting(ToolConfig(), "the tools episodes start with (flags: group tools)")
    budgets: Budgets = setting(Budgets(), "the budgets episodes start with (flags: group budgets)")
    # Set by Hugging Face Spaces, never flags.
    space_id: str = setting("", "the Hugging Face Space the app runs on", env="SPACE_ID")
    oauth: bool = setting(False, "Hugging Face sign-in: on a Space with hf_oauth: true (OAUTH_CLIENT_ID set)")

    host: str = setting("127.0.0.1", "interface to listen on (0.0.0.0 for all)", env="GRADIO_SERVER_NAME")
    port: int = setting(7860, "port to listen on", env="GRADIO_SERVER_PORT")
    db: str = setting(DEFAULT_DB, "trace store: SQLite path or SQLAlchemy URL", env="TRACES_DB")
    examples: str | None = setting(
        None,
        "example questions of the Ask tab: a question set's name in the trace store, or a FVQA/veRL parquet; "
        "default: the question sets in the store (python -m traces import fvqa FILE); none: no examples",
        env="APP_EXAMPLES",
        metavar="SET_OR_PARQUET",
    )
    auth_text: str = setting(
        "",
        "annotator logins as user:password[,user:password...]; none: no login, annotations signed 'anonymous'",
        env="APP_AUTH",
        flag="--auth",
        metavar="USER:PASSWORD[,...]",
    )
    max_concurrent: int | None = setting(
        None,
        "episodes running at once; default: 1 for a local model, 32 for --backend openai",
        flag="--max-concurrent-episodes",
        metavar="N",
        low=1,
    )
    allow_large_cpu: bool = setting(False, "allow loading models of 3B+ parameters on a CPU")
    lock_settings: bool = setting(
        False,
        "visitors cannot change the model, endpoints or tool providers (the default on a Space, and when "
        "listening beyond loopback without a login)",
        env="LOCK_SETTINGS",
    )
    unlock_settings: bool = setting(
        False,
        "let visitors change the model, endpoints and providers where they would be locked by default; "
        "endpoints they type are still refused when private (warned about at start-up)",
        env="UNLOCK_SETTINGS",
    )
    admins: tuple[str, ...] = setting(
        (),
        "who may launch training and eval jobs from the Train tab where settings are locked (a Space, "
        "LOCK_SETTINGS=1): login or Hugging Face user names (repeatable; env: comma-separated); others see jobs "
        "read-only",
        env="APP_ADMINS",
        flag="--admin",
        metavar="USER",
    )
    label_set: str = setting("default", "name of the annotation label set in the store")
    labels_text: str = setting(
        "",
        "comma-separated labels for the label set; default: the store's set, or a built-in one",
        flag="--labels",
        metavar="LABELS",
    )
    crops_route: str = setting(
        "/crops", "URL path where published crops are served (set PUBLIC_BASE_URL to https://HOST<route>)"
    )
    preload: bool = setting(False, "load the model at start-up instead of at the first question", env="PRELOAD_MODEL")

    def __post_init__(self) -> None:
        parse_auth(self.auth_text)  # a malformed login list fails at start-up, saying what to write
        if self.lock_settings and self.unlock_settings:
            raise ValueError("--lock-settings and --unlock-settings contradict each other: give one of them")
        check_bounds(self)
        if not self.crops_route.startswith("/") or not self.crops_route.strip("/"):
            raise ValueError(f"--crops-route must be a URL path such as /crops, not {self.crops_route!r}")

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        """The annotator logins, as (user, password) pairs."""
        return parse_auth(self.auth_text)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label.strip() for label in self.labels_text.split(",") if label.strip())

    @property
    def max_concurrent_episodes(self) -> int:
        """A local model runs one episode at a time; a served one many."""
        return self.max_concurrent or (32 if self.model.backend == "openai" else 1)

    @property
    def public(self) -> bool:
        """Whether others can reach the app: it runs on a Space, or listens beyond loopback."""
        return bool(self.space_id) or not loopback_only(self.host)

    @property
    def locked_by_default(self) -> bool:
        return bool(self.space_id) or (self.public and not self.auth)

    @property
    def settings_locked(self) -> bool:
        """Whether visitors are kept from changing the model, endpoints and providers."""
        return self.lock_settings or (self.locked_by_default and not self.unlock_settings)

    def startup_warnings(self) -> list[str]:
        """What the operator must hear about this configuration when the app starts."""
        if self.unlock_settings and self.locked_by_default:
            where = "on a Space" if self.space_id else f"listening on {self.host} without a login"
            return [
                f"--unlock-settings: visitors can change the model, endpoints and providers of this app {where}. "
                "Endpoints they type are refused when they point to private, loopback or link-local addresses."
            ]
        return []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py", description="DeepMMSearch-R1 studio: ask questions, watch the agent, review traces."
    )
    add_config_arguments(parser, AppConfig, title="app", exclude=NOT_FLAGS)
    add_episode_arguments(parser)
    return parser


def parse_auth(text: str | None) -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    pairs = []
    for item in text.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user or not password:
            raise ValueError("--auth / APP_AUTH must look like user:password[,user:password...]")
        pairs.append((user, password))
    return tuple(pairs)


def app_config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> AppConfig:
    """The app's configuration from parsed flags, then the environment, then defaults."""
    environ = os.environ if environ is None else environ
    app = config_from_args(
        AppConfig,
        args,
        environ=environ,
        model=config_from_args(ModelConfig, args, environ=environ),
        tools=config_from_args(ToolConfig, args, environ=environ),
        budgets=config_from_args(Budgets, args, environ=environ),
        oauth=bool(environ.get("SPACE_ID") and environ.get("OAUTH_CLIENT_ID")),
    )
    return app


# --- the settings panel ------------------------------------------------------------------------------


def settings_defaults(app: AppConfig) -> dict[str, Any]:
    """The panel's starting values, from the launch configuration."""
    return {
        **{name: getattr(app.model, name) for name in MODEL_FIELDS},
        **{name: getattr(app.tools, name) for name in TOOL_FIELDS},
        **{name: getattr(app.budgets, name) for name in BUDGET_FIELDS},
    }


def resolve_settings(app: AppConfig, form: dict[str, Any]) -> tuple[ModelConfig, ToolConfig, Budgets]:
    """The configs an episode runs with, given the panel's values. Raises UserFacingError when invalid.
    On a public deployment it resolves the host of an endpoint a visitor typed: call it from a worker thread."""
    form = {k: v for k, v in form.items() if v is not None and v != ""}
    model_changes = {k: form[k] for k in MODEL_FIELDS if k in form}
    tool_changes = {k: form[k] for k in TOOL_FIELDS if k in form}
    if app.settings_locked:
        # Visitors may tune budgets, dialect and thresholds, not what the server runs or calls.
        model_changes = {k: v for k, v in model_changes.items() if k == "dialect"}
        tool_changes = {k: v for k, v in tool_changes.items() if k in THRESHOLD_FIELDS}
    if "dialect" in model_changes and model_changes["dialect"] not in DIALECTS:
        raise UserFacingError(
            f"Unknown dialect {model_changes['dialect']!r}: choose one of {', '.join(sorted(DIALECTS))}."
        )
    launch = {"base_url": app.model.base_url, "summariser_base_url": app.tools.summariser_base_url}
    for name, what in ENDPOINT_FIELDS.items():
        url = str({**model_changes, **tool_changes}.get(name, launch[name]))
        if url.rstrip("/") == launch[name].rstrip("/"):
            continue  # the operator's own endpoint
        if not url.startswith(("http://", "https://")):
            raise UserFacingError(f"The {what} must be an http(s) URL such as http://127.0.0.1:8000/v1.")
        if app.public:
            check_visitor_endpoint(url, what)
    for name in THRESHOLD_FIELDS:
        if name in tool_changes:
            value = float(tool_changes[name])
            if not 0.0 <= value <= 1.0:
                raise UserFacingError(f"The grounding {name.replace('_', ' ')} must be between 0 and 1.")
            tool_changes[name] = value
    budget_changes = {}
    for name in BUDGET_FIELDS:
        if name in form:
            try:
                budget_changes[name] = int(form[name])
            except (TypeError, ValueError):
                raise UserFacingError(f"Budget {name.replace('_', ' ')} must be a whole number.") from None
    try:
        model = dataclasses.replace(app.model, **model_changes)
        tools = dataclasses.replace(app.tools, **tool_changes) if tool_changes else app.tools
        budgets = dataclasses.replace(app.budgets, **budget_changes)
    except (ValueError, TypeError) as exc:
        raise UserFacingError(f"Invalid setting: {exc}") from None
    return model, tools, budgets


def public_settings(tools: ToolConfig, budgets: Budgets) -> dict[str, Any]:
    """What is recorded with an episode about its tools and budgets (no secrets live in these configs)."""
    return {"budgets": dataclasses.asdict(budgets), "tools": dataclasses.asdict(tools)}
