"""The Train tab: a form for SFT, GRPO and eval jobs (the paper's settings pre-filled, grouped, with help), the
exact command each would run, Launch through the job runner, and the jobs in the store, refreshed live: the
selected one's metric charts, log tail and Cancel.

Callbacks wire components to `ui.train_form` (form values in, configs, command and checks out), `ui.jobs_view`
and `ui.charts` (job records and metric history in, rows, text and figures out) and to `training.runner`
(launch, list, cancel). Jobs live in the trace store and run in their own process sessions, so a job started
before the app restarted is listed and can be cancelled like any other.
(No `from __future__ import annotations`: Gradio reads the gr.Request / gr.OAuthProfile hints at runtime.)
"""

import functools
import logging
import os
from typing import Any

import gradio as gr

from traces.errors import NotFoundError
from traces.queries import EpisodeFilter, count_episodes, get_run
from traces.store import TraceStore
from training import runner
from ui.charts import job_figure, plot_value
from ui.errors import friendly_error
from ui.jobs_view import (
    JOB_COLUMNS,
    cancellable,
    job_markdown,
    jobs_caption,
    jobs_table,
    log_excerpt,
    rollout_run_choice,
)
from ui.safe import md_text
from ui.settings import AppConfig
from ui.traces_tab import TRACES_CONCURRENCY, annotator_name
from ui.train_form import (
    KIND_LABELS,
    KIND_SECTIONS,
    OPEN_GROUPS,
    SECTION_CLASSES,
    SECTION_TITLES,
    FormError,
    FormField,
    build_request,
    check_approved,
    check_request,
    form_fields,
    initial_value,
    kind_default,
    may_launch,
    preview,
)

log = logging.getLogger("ui")
JOBS_SHOWN = 100
REFRESH_S = 2.0
CANCEL_GRACE_S = 30.0


@functools.cache
def gpu_present() -> bool:
    """Whether torch sees a CUDA GPU (torch loads here the first time: a few seconds, once)."""
    from training.config import cuda_available

    return cuda_available()


def _component(f: FormField, value: Any) -> gr.components.Component:
    info = f"{f.help} ({f.flag})"
    elem_id = f"train-{f.section}-{f.name.replace('_', '-')}"
    if f.type == "bool" and not f.optional:
        return gr.Checkbox(value=bool(value), label=f.label, info=info, elem_id=elem_id)
    if f.type == "bool":
        return gr.Dropdown(["auto", "true", "false"], value=value, label=f.label, info=info, elem_id=elem_id)
    if f.choices:
        choices = ([""] if f.optional else []) + list(f.choices)
        return gr.Dropdown(choices, value=value, label=f.label, info=info, elem_id=elem_id)
    return gr.Textbox(value=value, label=f.label, info=info, max_lines=1, elem_id=elem_id)


def prefill(app: AppConfig) -> dict[str, Any]:
    """Start from the app's own model and store: train on its approved episodes, evaluate its model."""
    return {
        "sft.model": app.model.model,
        "sft.data": app.db,
        "sft.output_dir": "runs/sft",
        "grpo.model": app.model.model,
        "grpo.output_dir": "runs/grpo",
        **{f"model.{k}": getattr(app.model, k) for k in ("backend", "model", "base_url", "dialect")},
    }


def build_train_tab(app: AppConfig, store: TraceStore, tab: gr.Tab) -> dict[str, Any]:
    """The tab's components and events, inside `tab`. Returns the refresh timer (the app pauses it on other
    tabs) and the "open rollouts" button with the run filter value it produces, for the app to wire to Traces."""
    fields = form_fields()
    filled = prefill(app)
    selected_job = gr.State(None)
    rollout_choice = gr.State(None)

    gr.Markdown(
        "Launch SFT, GRPO or eval jobs on this machine and watch them. The settings start at the paper's; "
        "**Preview command** shows the exact line to run elsewhere (e.g. on a cluster)."
    )
    access = gr.Markdown("", elem_id="train-access")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=420):
            kind = gr.Radio(
                [(label, k) for k, label in KIND_LABELS.items()], value="sft", label="Job", elem_id="train-kind"
            )
            columns: dict[str, gr.Column] = {}
            inputs: list[gr.components.Component] = []
            judge_prompt: gr.components.Component | None = None
            judge_prompt_field: FormField | None = None
            for section in SECTION_CLASSES:
                with gr.Column(visible=section in KIND_SECTIONS["sft"], elem_id=f"train-{section}-section") as column:
                    groups: dict[str, list[FormField]] = {}
                    for f in fields:
                        if f.section == section:
                            groups.setdefault(f.group, []).append(f)
                    if list(groups) != [SECTION_TITLES[section]]:  # a lone group already carries the title
                        gr.Markdown(f"#### {SECTION_TITLES[section]}")
                    for title, members in groups.items():
                        with gr.Accordion(title, open=title in OPEN_GROUPS):
                            for f in members:
                                component = _component(f, initial_value(f, environ=os.environ, prefill=filled))
                                inputs.append(component)
                                if (f.section, f.name) == ("judge", "judge_prompt"):
                                    judge_prompt, judge_prompt_field = component, f
                columns[section] = column
            allow_cpu = gr.Checkbox(
                value=False,
                label="Run on CPU anyway",
                info="a model of 3B parameters or more is refused without a GPU unless this is ticked",
                elem_id="train-allow-cpu",
            )
            with gr.Row():
                preview_btn = gr.Button("Preview command", elem_id="train-preview")
                launch_btn = gr.Button("Launch", variant="primary", elem_id="train-launch")
            message = gr.Markdown("", elem_id="train-message")
            command = gr.Code("", language="shell", label="Command", interactive=False, elem_id="train-command")
        with gr.Column(scale=3, min_width=480):
            gr.Markdown("### Jobs")
            with gr.Row():
                refresh_btn = gr.Button("Refresh", size="sm", elem_id="train-refresh")
                caption = gr.Markdown("", elem_id="train-caption")
            table = gr.Dataframe(
                headers=JOB_COLUMNS, value=[], interactive=False, wrap=True, max_height=320, elem_id="train-jobs"
            )
            job_md = gr.Markdown("*Select a job in the list.*", elem_id="train-job")
            with gr.Row():
                cancel_btn = gr.Button(
                    "Cancel job", variant="stop", size="sm", interactive=False, elem_id="train-cancel"
                )
                rollout_btn = gr.Button(
                    "Open its rollouts in the Traces tab", size="sm", visible=False, elem_id="train-rollouts"
                )
            chart = gr.Plot(label="Metrics", elem_id="train-chart")
            log_box = gr.Textbox(
                label="Log (tail)", lines=12, max_lines=20, interactive=False, autoscroll=True, elem_id="train-log"
            )
    timer = gr.Timer(REFRESH_S, active=False)

    # --- callbacks ---------------------------------------------------------------------------------------------

    def values_of(raw: tuple) -> dict[str, Any]:
        return {f.key: v for f, v in zip(fields, raw, strict=True)}

    def show_kind(chosen: str) -> list[Any]:
        updates = [gr.update(visible=section in KIND_SECTIONS.get(chosen, ())) for section in columns]
        default = kind_default(judge_prompt_field, chosen) if judge_prompt_field else None
        return [*updates, gr.update(value=default) if default else gr.skip()]

    kind.change(show_kind, [kind], [*columns.values(), judge_prompt], api_name=False)

    def who_may(request: gr.Request | None, profile: gr.OAuthProfile | None) -> tuple[str | None, bool, str]:
        user = annotator_name(app, request, profile)
        allowed, note = may_launch(user, locked=app.settings_locked, admins=app.admins)
        return user, allowed, note

    def do_preview(chosen: str, override: bool, *raw: Any) -> tuple[str, str]:
        """The command; takes the same inputs as Launch (`override` unused) so both share one API signature."""
        try:
            request = build_request(chosen, values_of(raw), db=app.db, fields=fields)
            return preview(request), ""
        except FormError as exc:
            return gr.skip(), f"⚠ {md_text(str(exc))}"

    preview_btn.click(do_preview, [kind, allow_cpu, *inputs], [command, message], api_name="train_preview")

    # gr.Request and the profile come first: Gradio injects them by position, which stops at *raw.
    def do_launch(
        request: gr.Request, profile: gr.OAuthProfile | None, chosen: str, override: bool, *raw: Any
    ) -> list[Any]:
        user, allowed, note = who_may(request, profile)
        if not allowed:
            return [f"⚠ {note}", gr.skip(), gr.skip()]
        job_request = None
        try:
            job_request = build_request(chosen, values_of(raw), db=app.db, fields=fields)
            warnings = check_request(job_request, gpu=gpu_present(), allow_cpu=bool(override))
            if chosen == "sft":
                approved = count_episodes(store, EpisodeFilter(review="approved", run_ids=job_request.main.runs))
                check_approved(job_request, app.db, approved)
            job_id = runner.launch(chosen, job_request.configs, job_request.launch, store=store, launched_by=user)
        except FormError as exc:  # a form that builds but fails a check still shows its command
            command_shown = preview(job_request) if job_request is not None else gr.skip()
            return [f"⚠ {md_text(str(exc))}", command_shown, gr.skip()]
        except Exception as exc:
            return [f"⚠ Not started: {md_text(friendly_error(exc))}", gr.skip(), gr.skip()]
        text = f"✓ Started job {job_id}." + "".join(f"\n\n{md_text(w)}" for w in warnings)
        return [text, preview(job_request), job_id]

    # --- the jobs list and the selected job --------------------------------------------------------------------

    def job_view(job_id: int | None) -> list[Any]:
        if job_id is None:
            return [
                "*Select a job in the list.*",
                gr.update(interactive=False),
                gr.update(visible=False),
                None,
                None,
                "",
            ]
        try:
            job = runner.get_job(store, int(job_id))
        except NotFoundError:
            return [f"⚠ Job {job_id} is not in the store.", gr.update(interactive=False), gr.update(visible=False),
                    None, None, ""]  # fmt: skip
        run_name = None
        if job.run_id is not None:
            try:
                run_name = get_run(store, job.run_id).name
            except NotFoundError:
                run_name = None
        rollout = rollout_run_choice(job, run_name)
        history = runner.metric_history(store, job.id)
        return [
            job_markdown(job),
            gr.update(interactive=cancellable(job)),
            gr.update(visible=rollout is not None),
            rollout,
            plot_value(job_figure(job.kind, history), f"job-{job.id}-{job.kind}-metrics"),
            log_excerpt(runner.log_tail(job)),
        ]

    detail_outputs = [job_md, cancel_btn, rollout_btn, rollout_choice, chart, log_box]

    def refresh(job_id: int | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        try:
            jobs = runner.list_jobs(store, limit=JOBS_SHOWN)
        except Exception as exc:
            return [gr.skip(), f"⚠ {md_text(friendly_error(exc))}", gr.skip(), gr.skip(), *[gr.skip()] * 6]
        if job_id is None and jobs:
            job_id = jobs[0].id  # the newest job, until the user picks another
        _, allowed, note = who_may(request, profile)
        notes = [note] if note else []
        if gpu_present.cache_info().currsize and not gpu_present():
            notes.append("No GPU on this machine: jobs run on the CPU (fine for tiny models).")
        return [jobs_table(jobs), jobs_caption(len(jobs), JOBS_SHOWN), job_id, " ".join(notes), *job_view(job_id)]

    list_outputs = [table, caption, selected_job, access, *detail_outputs]
    refresh_btn.click(
        refresh, [selected_job], list_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name="train_jobs"
    )
    timer.tick(refresh, [selected_job], list_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name=False)

    def opened(job_id: int | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        gpu_present()  # detect once, off the page's first paint
        return [gr.Timer(active=True), *refresh(job_id, request, profile)]

    tab.select(opened, [selected_job], [timer, *list_outputs], api_name=False)

    launch_btn.click(
        do_launch,
        [kind, allow_cpu, *inputs],
        [message, command, selected_job],
        concurrency_limit=TRACES_CONCURRENCY,
        api_name="train_launch",
    ).then(refresh, [selected_job], list_outputs, api_name=False)

    def select_job(evt: gr.SelectData) -> list[Any]:
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        values = evt.row_value if isinstance(evt.row_value, list) else None
        job_id = int(values[0]) if values else None
        if job_id is None or not isinstance(row, int):
            return [gr.skip()] * (1 + len(detail_outputs))
        return [job_id, *job_view(job_id)]

    table.select(select_job, None, [selected_job, *detail_outputs], api_name=False)

    def do_cancel(job_id: int | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        _, allowed, note = who_may(request, profile)
        if not allowed:
            return [f"⚠ {note}", *job_view(job_id)]
        if job_id is None:
            return ["Select a job first.", *job_view(job_id)]
        try:
            job = runner.cancel(store, int(job_id), grace_s=CANCEL_GRACE_S, wait=False)
        except (NotFoundError, RuntimeError) as exc:
            return [f"⚠ {md_text(str(exc))}", *job_view(job_id)]
        text = (
            f"Job {job.id} is {job.status}."
            if not cancellable(job)
            else f"Cancelling job {job.id}: it stops at the end of its current step (killed after {CANCEL_GRACE_S:.0f} s)."
        )
        return [text, *job_view(job_id)]

    cancel_btn.click(
        do_cancel,
        [selected_job],
        [message, *detail_outputs],
        concurrency_limit=TRACES_CONCURRENCY,
        api_name="train_cancel",
    )

    def select_by_id(job_id: float | None) -> list[Any]:
        """For scripts (gradio_client): show job `job_id` as if picked in the list."""
        chosen = int(job_id) if job_id is not None else None
        return [chosen, *job_view(chosen)]

    pick = gr.Number(visible=False, precision=0)
    pick.submit(select_by_id, [pick], [selected_job, *detail_outputs], api_name="train_select")
    return {"timer": timer, "rollouts": (rollout_btn, rollout_choice)}
