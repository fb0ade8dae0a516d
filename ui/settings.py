"""App configuration (flags and env, DESIGN.md §3.7) and the per-session settings panel.

`AppConfig` is what `python app.py` was started with. The settings panel edits a copy per browser session;
`resolve_settings` turns the panel's values into the configs one episode runs with, or raises a readable
error. Secrets never appear here: API keys stay in the environment of the server process.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from agent.config import ModelConfig, add_episode_arguments
from agent.flags import config_from_args
from agent.loop import Budgets
from agent.protocol import DIALECTS
from traces.cli import DEFAULT_DB  # one default for the app and `python -m traces`
from ui.errors import UserFacingError

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

# Settings-panel fields that map onto the tool config, by the names agent/tools/config.py uses.
TEXT_PROVIDER_FIELD = "text_search"
IMAGE_PROVIDER_FIELD = "image_search"
GROUNDING_FIELDS = ("grounding_model", "box_threshold", "text_threshold")
BUDGET_FIELDS = ("max_image_searches", "max_tool_calls", "max_response_tokens", "max_turns")


@dataclass(frozen=True)
class AppConfig:
    host: str
    port: int
    db: str
    model: ModelConfig
    tools: Any  # agent.tools.config.ToolConfig
    budgets: Budgets
    examples: str | None
    auth: tuple[tuple[str, str], ...]
    oauth: bool  # Hugging Face OAuth (on Spaces with hf_oauth: true)
    max_concurrent_episodes: int
    allow_large_cpu: bool
    lock_settings: bool
    label_set: str
    labels: tuple[str, ...]
    crops_route: str  # where the app serves published crops (for Lens), e.g. /crops
    preload: bool


def add_app_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("app")
    group.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="interface to listen on (0.0.0.0 for all; env GRADIO_SERVER_NAME)",
    )
    group.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        help="port (env GRADIO_SERVER_PORT)",
    )
    group.add_argument(
        "--db",
        default=os.environ.get("TRACES_DB", DEFAULT_DB),
        help="trace store: SQLite path or SQLAlchemy URL (env TRACES_DB)",
    )
    group.add_argument(
        "--examples",
        default=os.environ.get("EXAMPLES_PARQUET"),
        help="question set (FVQA/veRL parquet) for example questions; default: ../shared/data/fvqa_mini.parquet when present",
    )
    group.add_argument(
        "--auth",
        default=None,
        help="annotator logins as user:password[,user:password...] (default: env APP_AUTH; none: no login, annotations signed 'anonymous')",
    )
    group.add_argument(
        "--max-concurrent-episodes",
        type=int,
        default=None,
        help="episodes running at once (default: 1 for a local model, 32 for --backend openai)",
    )
    group.add_argument("--allow-large-cpu", action="store_true", help="allow loading models of 3B+ parameters on CPU")
    group.add_argument(
        "--lock-settings",
        action="store_true",
        default=os.environ.get("LOCK_SETTINGS") == "1",
        help="visitors cannot change model, endpoint or tool providers (env LOCK_SETTINGS=1; use on public Spaces)",
    )
    group.add_argument("--label-set", default="default", help="name of the annotation label set in the store")
    group.add_argument(
        "--labels",
        default=None,
        help="comma-separated labels for the label set (default: the store's set, or a built-in one)",
    )
    group.add_argument(
        "--crops-route",
        default="/crops",
        help="URL path where published crops are served (set PUBLIC_BASE_URL to https://HOST<route>)",
    )
    group.add_argument(
        "--preload",
        action="store_true",
        default=os.environ.get("PRELOAD_MODEL") == "1",
        help="load the model at start-up instead of at the first question (env PRELOAD_MODEL=1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py", description="DeepMMSearch-R1 studio: ask questions, watch the agent, review traces."
    )
    add_app_arguments(parser)
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


def app_config_from_args(args: argparse.Namespace) -> AppConfig:
    from agent.tools.config import ToolConfig

    model = config_from_args(ModelConfig, args)
    examples = args.examples
    if examples is None:
        from ui.examples import DEFAULT_EXAMPLES

        examples = str(DEFAULT_EXAMPLES) if DEFAULT_EXAMPLES.is_file() else None
    concurrent = args.max_concurrent_episodes or (32 if model.backend == "openai" else 1)
    labels = tuple(label.strip() for label in args.labels.split(",") if label.strip()) if args.labels else ()
    return AppConfig(
        host=args.host,
        port=args.port,
        db=args.db,
        model=model,
        tools=config_from_args(ToolConfig, args),
        budgets=config_from_args(Budgets, args),
        examples=examples,
        auth=parse_auth(args.auth if args.auth is not None else os.environ.get("APP_AUTH")),
        oauth=bool(os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID")),
        max_concurrent_episodes=max(1, concurrent),
        allow_large_cpu=args.allow_large_cpu,
        lock_settings=args.lock_settings,
        label_set=args.label_set,
        labels=labels,
        crops_route="/" + args.crops_route.strip("/"),
        preload=args.preload,
    )


# --- the settings panel ------------------------------------------------------------------------------


def _field_names(obj: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()


def settings_defaults(app: AppConfig) -> dict[str, Any]:
    """The panel's starting values, from the launch configuration."""
    tools = app.tools
    names = _field_names(tools)
    values: dict[str, Any] = {
        "model": app.model.model,
        "backend": app.model.backend,
        "base_url": app.model.base_url,
        "dialect": app.model.dialect,
        **{name: getattr(app.budgets, name) for name in BUDGET_FIELDS},
    }
    for name in (TEXT_PROVIDER_FIELD, IMAGE_PROVIDER_FIELD, *GROUNDING_FIELDS):
        if name in names:
            values[name] = getattr(tools, name)
    return values


def resolve_settings(app: AppConfig, form: dict[str, Any]) -> tuple[ModelConfig, Any, Budgets]:
    """The configs an episode runs with, given the panel's values. Raises UserFacingError when invalid."""
    form = {k: v for k, v in form.items() if v is not None and v != ""}
    model_changes = {k: form[k] for k in ("model", "backend", "base_url", "dialect") if k in form}
    tool_names = _field_names(app.tools)
    tool_changes = {
        k: form[k]
        for k in (TEXT_PROVIDER_FIELD, IMAGE_PROVIDER_FIELD, *GROUNDING_FIELDS)
        if k in form and k in tool_names
    }
    if app.lock_settings:
        # Public deployments: visitors may tune budgets, dialect and thresholds, not what the server runs or calls.
        model_changes = {k: v for k, v in model_changes.items() if k == "dialect"}
        tool_changes = {k: v for k, v in tool_changes.items() if k in ("box_threshold", "text_threshold")}
    if "dialect" in model_changes and model_changes["dialect"] not in DIALECTS:
        raise UserFacingError(
            f"Unknown dialect {model_changes['dialect']!r}: choose one of {', '.join(sorted(DIALECTS))}."
        )
    if "base_url" in model_changes and not str(model_changes["base_url"]).startswith(("http://", "https://")):
        raise UserFacingError("The endpoint must be an http(s) URL such as http://127.0.0.1:8000/v1.")
    for name in ("box_threshold", "text_threshold"):
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


def public_settings(model: ModelConfig, tools: Any, budgets: Budgets) -> dict[str, Any]:
    """What is recorded with an episode about its settings (no secrets live in these configs)."""
    out: dict[str, Any] = {"budgets": dataclasses.asdict(budgets)}
    public = getattr(tools, "public", None)
    out["tools"] = (
        public()
        if callable(public)
        else {k: v for k, v in dataclasses.asdict(tools).items() if "key" not in k.lower()}
        if dataclasses.is_dataclass(tools)
        else {}
    )
    return out
