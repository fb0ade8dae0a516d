"""The Train tab's form: which settings each job kind has, how they are grouped, and the form's values turned
into the job's configs and its exact command. Pure functions, no Gradio: tested without a server.

Every field comes from the config classes themselves (`agent.flags.describe_config`): the training settings
(`training.config`), and for GRPO and eval the loop's budgets, the tools and the judge, as their command lines
take them. Defaults are the paper's, because the classes' defaults are. A field a class gains later shows up
in an "Other settings" group without a change here.

Checks before anything starts: values that do not parse (here) and values the config classes refuse (their
bounds and rules, the same as on the command line; the message names the flag) in `build_request`; a missing
model or data, a 7B-class model on a machine without a GPU (refused unless overridden, with the reason) in
`check_request`; and who may launch at all on a locked deployment (`may_launch`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import ModelConfig
from agent.eval import EvalConfig
from agent.flags import describe_config, parse_env_value
from agent.judge import JudgeConfig
from agent.loop import Budgets
from agent.tools.config import ToolConfig
from training.config import GRPOSettings, LaunchSettings, SFTSettings
from training.runner import preview_command
from ui.preflight import CPU_LIMIT_BILLIONS, approx_billions

KINDS = ("sft", "grpo", "eval")
KIND_LABELS = {"sft": "SFT (LoRA on reviewed episodes)", "grpo": "GRPO (online RL with rollouts)", "eval": "Eval"}
SECTION_CLASSES: dict[str, type] = {
    "sft": SFTSettings,
    "grpo": GRPOSettings,
    "eval": EvalConfig,
    "model": ModelConfig,
    "budgets": Budgets,
    "tools": ToolConfig,
    "judge": JudgeConfig,
    "launch": LaunchSettings,
}
SECTION_TITLES = {
    "sft": "SFT",
    "grpo": "GRPO",
    "eval": "Eval",
    "model": "Model under evaluation",
    "budgets": "Episode budgets",
    "tools": "Tools",
    "judge": "Judge",
    "launch": "Processes",
}
KIND_SECTIONS = {
    "sft": ("sft", "launch"),
    "grpo": ("grpo", "budgets", "tools", "judge", "launch"),
    "eval": ("eval", "model", "budgets", "tools", "judge"),
}
# Set by the app or the runner, never typed: the job records into the app's store, in the background.
HIDDEN = {
    "launch": ("db", "job_id", "log_dir", "background"),
    "eval": ("db", "progress", "job_id"),
}
_TRAINING_GROUPS = {
    "LoRA": ("use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "freeze_vision"),
    "Optimisation": (
        "num_train_epochs",
        "max_steps",
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "seed",
    ),
    "Memory and precision": ("max_length", "gradient_checkpointing", "bf16", "max_pixels"),
    "Logging and checkpoints": ("logging_steps", "save_steps", "save_total_limit", "merge", "report_to"),
}
GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "sft": {
        "Model and data": ("model", "data", "output_dir", "runs", "review", "include_failed_turns"),
        **_TRAINING_GROUPS,
    },
    "grpo": {
        "Model and data": ("model", "data", "output_dir", "limit", "dialect", "prompts_file"),
        "GRPO (the paper's settings)": (
            "num_generations",
            "epsilon",
            "beta",
            "scale_rewards",
            "loss_type",
            "judge_weight",
            "format_weight",
            "temperature",
            "top_p",
        ),
        **_TRAINING_GROUPS,
        "Generation": ("vllm_server", "vllm_server_timeout", "batch_wait_s"),
        "Rollout recording": ("record_rollouts", "run_name"),
    },
    "eval": {
        "Question set": ("data", "split", "limit", "data_source", "run_name"),
        "Run": ("concurrency", "max_consecutive_failures", "rejudge", "report"),
    },
}
OPEN_GROUPS = ("Model and data", "Question set", "Model under evaluation")
DEFAULT_OVERRIDES = {("judge", "judge_prompt"): {"grpo": "reward", "eval": "eval"}}  # GRPO's reward judge


class FormError(ValueError):
    """A form the job cannot start from; the message is written for the page."""


@dataclass(frozen=True)
class FormField:
    section: str
    name: str
    flag: str
    type: str  # "bool" | "int" | "float" | "str"
    default: Any
    help: str
    choices: tuple[str, ...] | None
    repeatable: bool
    optional: bool  # None is a valid value (empty means "not set")
    group: str

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


def _group(section: str, name: str) -> str:
    for title, names in GROUPS.get(section, {}).items():
        if name in names:
            return title
    return SECTION_TITLES[section] if section not in GROUPS else "Other settings"


def form_fields() -> list[FormField]:
    """Every visible field of every section, in the order the form shows them (grouped)."""
    out = []
    for section, cls in SECTION_CLASSES.items():
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
        rows = [r for r in describe_config(cls) if r["name"] not in HIDDEN.get(section, ())]
        order = [n for names in GROUPS.get(section, {}).values() for n in names]
        rows.sort(key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
        for r in rows:
            out.append(
                FormField(
                    section=section,
                    name=r["name"],
                    flag=r["flag"],
                    type=r["type"] if r["type"] in ("bool", "int", "float") else "str",
                    default=r["default"],
                    help=r["help"],
                    choices=tuple(r["choices"]) if r["choices"] else None,
                    repeatable=r["repeatable"],
                    optional="None" in str(hints[r["name"]]) or r["default"] is None,
                    group=_group(section, r["name"]),
                )
            )
    return out


def initial_value(
    f: FormField, *, environ: Mapping[str, str] | None = None, prefill: Mapping[str, Any] | None = None
) -> Any:
    """What the form shows first: `prefill` (the app's own model and store), else the environment's value where
    the job's command line would read one, else the class default (the paper's)."""
    if prefill and f.key in prefill:
        return shown(f, prefill[f.key])
    value = f.default
    cls = SECTION_CLASSES[f.section]
    field = {x.name: x for x in dataclasses.fields(cls)}[f.name]
    env = field.metadata.get("env")
    if environ is not None and env and environ.get(env, "").strip():
        value = parse_env_value(cls, field, environ[env])
    return shown(f, value)


def kind_default(f: FormField, kind: str) -> Any | None:
    """The value a kind's own command line starts a shared field from (GRPO judges with the reward prompt)."""
    per_kind = DEFAULT_OVERRIDES.get((f.section, f.name))
    return per_kind.get(kind) if per_kind else None


def shown(f: FormField, value: Any) -> Any:
    """A config value as its component holds it: text for text fields, a choice for booleans that may be unset."""
    if f.type == "bool":
        if f.optional:
            return "auto" if value is None else ("true" if value else "false")
        return bool(value)
    if f.repeatable:
        return ", ".join(str(v) for v in value or ())
    return "" if value is None else str(value)


def _parse(f: FormField, raw: Any) -> Any:
    """The component's value as the field's type; FormError names the field and says what is wrong."""
    if f.type == "bool":
        if f.optional:
            return {"auto": None, "true": True, "false": False, None: None, "": None}.get(raw, bool(raw))
        return bool(raw)
    text = "" if raw is None else str(raw).strip()
    if f.repeatable:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            return tuple(int(p) if f.type == "int" else float(p) if f.type == "float" else p for p in parts)
        except ValueError:
            raise FormError(f"{f.label}: {text!r} must be a comma-separated list of {f.type} values") from None
    if text == "":
        if f.optional:
            return None
        if f.type in ("int", "float"):
            raise FormError(f"{f.label} needs a value (default: {f.default})")
        return ""
    if f.type == "int":
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise FormError(f"{f.label}: {text!r} is not a whole number") from None
            if not number.is_integer():
                raise FormError(f"{f.label}: {text!r} is not a whole number") from None
            return int(number)
    if f.type == "float":
        try:
            return float(text)
        except ValueError:
            raise FormError(f"{f.label}: {text!r} is not a number") from None
    if f.choices and text not in f.choices:
        raise FormError(f"{f.label} must be one of {', '.join(f.choices)}, not {text!r}")
    return text


@dataclass(frozen=True)
class JobRequest:
    """A checked form: the job's kind and the configs its command is built from."""

    kind: str
    # sft: (SFTSettings,); grpo: (GRPOSettings, Budgets, ToolConfig, JudgeConfig);
    # eval: (EvalConfig, ModelConfig, Budgets, ToolConfig, JudgeConfig)
    configs: tuple[object, ...]
    launch: LaunchSettings  # where it records and how many processes (an eval runs in one)

    @property
    def main(self) -> Any:
        return self.configs[0]

    @property
    def model_config(self) -> ModelConfig | None:
        """The model an eval runs (None for training jobs: their model is `main.model`)."""
        return self.configs[1] if self.kind == "eval" else None  # type: ignore[return-value]


def build_request(
    kind: str, values: Mapping[str, Any], *, db: str, log_dir: str = "runs/logs", fields: Sequence[FormField] = ()
) -> JobRequest:
    """The configs a job of `kind` runs with, from the form's values by field key ("sft.learning_rate").
    Raises FormError with a message for the page."""
    if kind not in KINDS:
        raise FormError(f"Choose a job kind: {', '.join(KINDS)}.")
    fields = fields or form_fields()
    built: dict[str, object] = {}
    for section in KIND_SECTIONS[kind]:
        cls = SECTION_CLASSES[section]
        kwargs: dict[str, Any] = {}
        for f in fields:
            if f.section != section:
                continue
            kwargs[f.name] = _parse(f, values.get(f.key, shown(f, f.default)))
        if section == "launch":
            kwargs.update(db=db, log_dir=log_dir, background=True)
        if section == "eval":
            kwargs.update(db=db, progress=False)
        try:
            built[section] = cls(**kwargs)
        except (ValueError, TypeError) as exc:
            raise FormError(str(exc)) from None
    if kind == "sft":
        return JobRequest(kind, (built["sft"],), built["launch"])  # type: ignore[arg-type]
    if kind == "grpo":
        configs = (built["grpo"], built["budgets"], built["tools"], built["judge"])
        return JobRequest(kind, configs, built["launch"])  # type: ignore[arg-type]
    configs = (built["eval"], built["model"], built["budgets"], built["tools"], built["judge"])
    launch = LaunchSettings(db=db, log_dir=log_dir, background=True)
    return JobRequest(kind, configs, launch)


# ---- commands ---------------------------------------------------------------------------------------------------


def preview(request: JobRequest) -> str:
    """The exact command the job runs (without the job id the runner adds), to copy for a cluster:
    `python -m training sft|grpo ...`, `accelerate launch ...` or `python -m agent eval ...`."""
    return preview_command(request.kind, request.configs, request.launch)


# ---- checks before launching ------------------------------------------------------------------------------------


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and not Path(text).exists()


def _local_store(data: str) -> bool:
    return data.endswith((".db", ".sqlite", ".sqlite3")) or "://" in data


def check_request(request: JobRequest, *, gpu: bool, allow_cpu: bool) -> list[str]:
    """Problems that must stop a launch (FormError) and warnings to show with it (returned).

    A model folder or data file that does not exist stops it; a 7B-class model without a GPU stops it unless
    `allow_cpu`; no GPU at all is a warning (tiny models train on a CPU)."""
    warnings = []
    model = request.model_config.model if request.model_config is not None else request.main.model
    served = request.model_config is not None and request.model_config.backend == "openai"
    if not served and not _looks_like_hub_id(model) and not Path(model).exists():
        raise FormError(f"Model {model!r} is neither a local folder nor a hub id (org/name): check the path.")
    if request.kind in ("sft", "grpo"):
        data = request.main.data
        if "://" not in data and not Path(data).exists() and (request.kind == "sft" or Path(data).suffix):
            raise FormError(
                f"Data {data!r} does not exist: give a trace store, an exported SFT file or a question set."
            )
    else:
        data = request.main.data
        if not data:
            raise FormError("Data is required: a question-set file, a question-set run name, or a hub dataset id.")
        if Path(data).suffix in (".parquet", ".jsonl") and not Path(data).exists():
            raise FormError(f"Data {data!r} does not exist.")
    if not gpu and not served:
        size = approx_billions(model)
        if size is not None and size >= CPU_LIMIT_BILLIONS and not allow_cpu:
            raise FormError(
                f"{model} (~{size:g}B parameters) needs a GPU: this machine has none, and on a CPU the job would "
                "need tens of GB of RAM and hours per step. Run it on a GPU machine (Preview command gives the "
                "line to copy), or tick 'Run on CPU anyway' to override."
            )
        warnings.append(
            "No GPU here: the job runs on the CPU, which suits only tiny models"
            + (" (overridden for a large model)." if size is not None and size >= CPU_LIMIT_BILLIONS else ".")
        )
    if request.launch.num_processes > 1 and not gpu:
        warnings.append("Several processes without GPUs run as CPU processes (gloo): for checking the setup only.")
    return warnings


def check_approved(request: JobRequest, app_db: str, approved: int | None) -> None:
    """SFT on the app's own store with no approved episodes: say so before starting (nothing to train on)."""
    if request.kind == "sft" and approved == 0 and _same_store(request.main.data, app_db):
        raise FormError(
            "The trace store has no approved episodes to train on: approve some in the Traces tab "
            "(\u201cApprove for training data\u201d), or give an exported SFT file."
        )


def _same_store(data: str, db: str) -> bool:
    if "://" in data or "://" in db:
        return data == db
    try:
        return Path(data).resolve() == Path(db).resolve()
    except OSError:
        return False


def may_launch(user: str | None, *, locked: bool, admins: Sequence[str]) -> tuple[bool, str]:
    """Whether `user` may launch jobs here, and what the page says about it."""
    if not locked:
        return True, ""
    if user and user in admins:
        return True, f"Launching as **{user}** (an admin of this deployment)."
    if not admins:
        return False, (
            "This deployment is locked and names no admins (--admins / APP_ADMINS): jobs are shown read-only."
        )
    who = f"**{user}** is" if user and user != "anonymous" else "You are"
    return False, f"{who} not an admin of this locked deployment: jobs are shown read-only."
