"""The Traces tab: filter and page through recorded episodes, open one (rendered by the same functions as
a live episode), annotate it, and move through a review queue with the keyboard.

Shortcuts (ui/assets.py): j / k next / previous episode, 1-9 toggle labels, Ctrl+Enter save and next;
none of them act while the cursor is in a text field (Escape leaves the field). An episode still running
(perhaps started from a page since reloaded) is shown as recorded so far and refreshed while it runs; an
imported question not run yet is shown as pending, with its gold answers.
(No `from __future__ import annotations`: Gradio reads the gr.Request / gr.OAuthProfile hints at runtime.)
"""

import logging
import time
from typing import Any

import gradio as gr

from traces.annotations import annotate, list_annotations
from traces.errors import NotFoundError
from traces.queries import EpisodeFilter, count_episodes, list_episodes, list_runs, load_episode
from traces.replay import episode_events
from ui.errors import friendly_error
from ui.panel import EpisodePanel, build_panel, panel_values
from ui.render import EpisodeView, fold
from ui.review import (
    ANY,
    CORRECT_CHOICES,
    CROP_CHOICES,
    LIST_COLUMNS,
    PATTERN_FILTERS,
    REVIEW_FILTERS,
    STATUS_FILTERS,
    VERDICT_FILTERS,
    AnnotationForm,
    annotation_fields,
    form_from_annotation,
    history_markdown,
    label_choices,
    list_rows,
    make_filter,
    match_count,
    mine,
    neighbour,
    run_choice,
)
from ui.safe import md_text
from ui.settings import AppConfig

log = logging.getLogger("ui")
PAGE_SIZE = 50
LIVE_REFRESH_S = 2.0  # how often an open episode that is still running is read again
# Reading traces is cheap and must never wait behind episodes: its own, wider queue.
TRACES_CONCURRENCY = 8


def annotator_name(app: AppConfig, request: gr.Request | None, profile: gr.OAuthProfile | None) -> str | None:
    """Who is annotating: the Hugging Face account (Spaces OAuth), else the gradio login, else "anonymous"
    when the app runs without any login. None means "must sign in first"."""
    if profile is not None:
        return profile.username
    username = getattr(request, "username", None) if request is not None else None
    if username:
        return username
    if app.auth or app.oauth:
        return None
    return "anonymous"


def build_traces_tab(app: AppConfig, store: Any, labels: tuple[str, ...]) -> dict[str, Any]:
    ids_state = gr.State([])  # episode ids of the shown page, in order
    nav_state = gr.State({"pages": [None], "next": None})  # keyset cursors for paging (see page_move)
    current_state = gr.State(None)  # the open episode's id
    goto_state = gr.State(None)  # an episode another tab asks to open (the Ask tab's "Reopen in Traces")
    live = gr.Timer(LIVE_REFRESH_S, active=False)  # ticks while the open episode is still running

    who = gr.Markdown("", elem_id="tr-who")
    with gr.Row():
        text = gr.Textbox(label="Search question, answer and queries", scale=3, elem_id="tr-search")
        status = gr.Dropdown(list(STATUS_FILTERS), value=ANY, label="Status", scale=1)
        pattern = gr.Dropdown(list(PATTERN_FILTERS), value=ANY, label="Tool use", scale=1)
        review = gr.Dropdown(list(REVIEW_FILTERS), value=ANY, label="Review", scale=1)
        verdict = gr.Dropdown(list(VERDICT_FILTERS), value=ANY, label="Verdict", scale=1)
        run = gr.Dropdown([ANY], value=ANY, label="Run", scale=1, allow_custom_value=True)
    with gr.Row():
        refresh = gr.Button("Refresh", size="sm", elem_id="tr-refresh")
        newer = gr.Button("◀ Newer page", size="sm")
        older = gr.Button("Older page ▶", size="sm")
        count = gr.Markdown("", elem_id="tr-count")
    table = gr.Dataframe(
        headers=LIST_COLUMNS, value=[], interactive=False, wrap=True, elem_id="tr-list", max_height=320
    )

    header = gr.Markdown("*Open an episode from the list (click a row), or press j.*", elem_id="tr-header")
    panel: EpisodePanel = build_panel("tr", chat_height=480)

    with gr.Group(elem_id="tr-annotate"):
        with gr.Row():
            label_box = gr.CheckboxGroup(label_choices(labels), label="Labels (keys 1-9)", elem_id="tr-labels", scale=3)
            correct = gr.Radio(CORRECT_CHOICES, value="unset", label="Final answer", elem_id="tr-correct", scale=2)
            crop_verdict = gr.Radio(CROP_CHOICES, value="unset", label="Crop", elem_id="tr-crop", scale=2)
        with gr.Row():
            corrected = gr.Textbox(label="Corrected answer", elem_id="tr-corrected", scale=2)
            comment = gr.Textbox(label="Comment", elem_id="tr-comment", lines=2, scale=3)
            approved = gr.Checkbox(label="Approve for training data", elem_id="tr-approved", scale=1)
        with gr.Row():
            prev_btn = gr.Button("◀ Previous (k)", elem_id="tr-prev", size="sm")
            next_btn = gr.Button("Next (j) ▶", elem_id="tr-next", size="sm")
            unreviewed_btn = gr.Button("Next unreviewed", elem_id="tr-unreviewed", size="sm")
            save_btn = gr.Button("Save", elem_id="tr-save", variant="secondary", size="sm")
            save_next_btn = gr.Button(
                "Save and next (Ctrl+Enter)", elem_id="tr-save-next", variant="primary", size="sm"
            )
        save_status = gr.Markdown("", elem_id="tr-save-status")
        history = gr.Markdown("", elem_id="tr-history")

    form_inputs = [label_box, correct, corrected, crop_verdict, approved, comment]
    filter_inputs = [text, status, pattern, review, verdict, run]
    # What opening an episode sets; the timer runs while that episode is still running.
    opened = [current_state, live, header, *panel.outputs, *form_inputs, history, save_status]
    not_opened = [None, gr.Timer(active=False)]  # current_state and the timer when nothing could be opened

    # --- callbacks: each reads the store and hands records to the pure functions ---------------------

    def _filter(*values: Any) -> EpisodeFilter:
        return make_filter(*values)

    def load_page(cursor: str | None, *values: Any) -> tuple[list, list, str, str | None]:
        flt = _filter(*values)
        page = list_episodes(store, flt, limit=PAGE_SIZE, after=cursor)
        total = count_episodes(store, flt)
        ids = [s.id for s in page.items]
        return list_rows(page.items), ids, match_count(total), page.next_cursor

    def refresh_list(*values: Any) -> tuple:
        try:
            rows, ids, counted, next_cursor = load_page(None, *values)
        except Exception as exc:
            return [], [], f"⚠ {md_text(friendly_error(exc))}", {"pages": [None], "next": None}, gr.skip()
        runs = [ANY] + [run_choice(r.id, r.name) for r in list_runs(store)]
        return rows, ids, counted, {"pages": [None], "next": next_cursor}, gr.update(choices=runs)

    list_outputs = [table, ids_state, count, nav_state, run]
    refresh.click(
        refresh_list, filter_inputs, list_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name="list_traces"
    )
    for component in (status, pattern, review, verdict, run):
        component.input(refresh_list, filter_inputs, list_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name=False)
    text.submit(refresh_list, filter_inputs, list_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name=False)

    def page_move(nav: dict, direction: int, *values: Any) -> tuple:
        """nav = {"pages": start cursors of the pages walked so far (last = shown), "next": the next page's}."""
        pages, nxt = list(nav.get("pages") or [None]), nav.get("next")
        if direction > 0:
            if nxt is None:
                return gr.skip(), gr.skip(), "No older episodes.", nav
            pages.append(nxt)
        else:
            if len(pages) <= 1:
                return gr.skip(), gr.skip(), "This is the newest page.", nav
            pages.pop()
        rows, ids, counted, next_cursor = load_page(pages[-1], *values)
        return rows, ids, counted, {"pages": pages, "next": next_cursor}

    def go_older(nav: dict, *values: Any) -> tuple:
        return page_move(nav, 1, *values)

    def go_newer(nav: dict, *values: Any) -> tuple:
        return page_move(nav, -1, *values)

    page_outputs = [table, ids_state, count, nav_state]
    older.click(
        go_older, [nav_state, *filter_inputs], page_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name=False
    )
    newer.click(
        go_newer, [nav_state, *filter_inputs], page_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name=False
    )

    def read_view(episode_id: str) -> EpisodeView:
        """The stored episode folded into a view; one without its closing event gets the store's status."""
        view = fold(episode_events(store, episode_id))
        if view.finished is None:
            view.stored_status = load_episode(store, episode_id).summary.status  # running or pending
        return view

    def open_episode(episode_id: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        if not episode_id:
            return [gr.skip()] * len(opened)
        try:
            view = read_view(episode_id)
            records = list_annotations(store, episode_id, history=True)
        except NotFoundError:
            message = f"⚠ Episode {md_text(episode_id)} is not in the store."
            return [*not_opened, message] + [gr.skip()] * (len(opened) - 3)
        except Exception as exc:
            return [*not_opened, f"⚠ {md_text(friendly_error(exc))}"] + [gr.skip()] * (len(opened) - 3)
        name = annotator_name(app, request, profile)
        current = [r for r in records if not any(o.supersedes_id == r.id for o in records)]
        form = form_from_annotation(mine(current, name))
        return [
            episode_id,
            gr.Timer(active=view.status == "running"),
            episode_header(view, episode_id),
            *panel_values(view),
            form.labels,
            form.correct,
            form.corrected_answer,
            form.crop_verdict,
            form.approved,
            form.comment,
            history_markdown(records),
            "",
        ]

    def refresh_running(episode_id: str | None) -> list[Any]:
        """A timer tick: the open running episode as recorded now (the annotation form is left as it is)."""
        if not episode_id:
            return [gr.Timer(active=False)] + [gr.skip()] * (1 + len(panel.outputs))
        try:
            view = read_view(episode_id)
        except Exception as exc:  # deleted meanwhile, or the store is unreachable: stop polling, say why
            return [gr.Timer(active=False), f"⚠ {md_text(friendly_error(exc))}"] + [gr.skip()] * len(panel.outputs)
        return [gr.Timer(active=view.status == "running"), episode_header(view, episode_id), *panel_values(view)]

    live.tick(
        refresh_running,
        [current_state],
        [live, header, *panel.outputs],
        concurrency_limit=TRACES_CONCURRENCY,
        show_progress="hidden",
        api_name=False,
    )

    def select_row(ids: list, evt: gr.SelectData, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        episode_id = ids[row] if isinstance(row, int) and 0 <= row < len(ids) else None
        return open_episode(episode_id, request, profile)

    table.select(select_row, [ids_state], opened, concurrency_limit=TRACES_CONCURRENCY, api_name=False)

    def step(
        ids: list, current: str | None, delta: int, request: gr.Request, profile: gr.OAuthProfile | None
    ) -> list[Any]:
        target = neighbour(ids, current, delta)
        if target is None:
            return [gr.skip()] * (len(opened) - 1) + ["End of this page: use “Older page ▶” for more."]
        return open_episode(target, request, profile)

    def go_next(ids: list, current: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        return step(ids, current, 1, request, profile)

    def go_prev(ids: list, current: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        return step(ids, current, -1, request, profile)

    next_btn.click(go_next, [ids_state, current_state], opened, concurrency_limit=TRACES_CONCURRENCY, api_name=False)
    prev_btn.click(go_prev, [ids_state, current_state], opened, concurrency_limit=TRACES_CONCURRENCY, api_name=False)

    def next_unreviewed(current: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        page = list_episodes(
            store,
            EpisodeFilter(
                review="none",
                status=("answered", "budget_exhausted", "format_error", "error", "cancelled", "interrupted"),
            ),
            limit=2,
        )
        target = next((s.id for s in page.items if s.id != current), None)
        if target is None:
            return [gr.skip()] * (len(opened) - 1) + ["Every finished episode has been reviewed."]
        return open_episode(target, request, profile)

    unreviewed_btn.click(
        next_unreviewed, [current_state], opened, concurrency_limit=TRACES_CONCURRENCY, api_name="next_unreviewed"
    )

    def save(
        current: str | None,
        labels_v: list,
        correct_v: str,
        corrected_v: str,
        crop_v: str,
        approved_v: bool,
        comment_v: str,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> tuple[str, str]:
        if not current:
            return gr.skip(), "Open an episode first."
        name = annotator_name(app, request, profile)
        if name is None:
            return gr.skip(), "⚠ Sign in to annotate (your name is recorded with each annotation)."
        form = AnnotationForm(
            list(labels_v or []),
            correct_v or "unset",
            corrected_v or "",
            crop_v or "unset",
            bool(approved_v),
            comment_v or "",
        )
        try:
            saved = annotate(store, current, name, label_set=app.label_set, **annotation_fields(form))
            records = list_annotations(store, current, history=True)
        except Exception as exc:
            return gr.skip(), f"⚠ Not saved: {md_text(friendly_error(exc))}"
        return history_markdown(records), f"✓ Saved as **{md_text(saved.annotator)}** (version {saved.id})."

    def reload_page(nav: dict, *values: Any) -> tuple:
        """The shown page read again (after a save: its review column, and what the filters now select)."""
        pages = list(nav.get("pages") or [None])
        try:
            rows, ids, counted, next_cursor = load_page(pages[-1], *values)
        except Exception as exc:
            return gr.skip(), gr.skip(), f"⚠ {md_text(friendly_error(exc))}", nav
        return rows, ids, counted, {"pages": pages, "next": next_cursor}

    save_inputs = [current_state, *form_inputs]
    save_btn.click(
        save, save_inputs, [history, save_status], concurrency_limit=TRACES_CONCURRENCY, api_name="annotate"
    ).then(reload_page, [nav_state, *filter_inputs], page_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name=False)

    def save_and_next(
        ids: list,
        current: str | None,
        labels_v: list,
        correct_v: str,
        corrected_v: str,
        crop_v: str,
        approved_v: bool,
        comment_v: str,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> list[Any]:
        hist, message = save(current, labels_v, correct_v, corrected_v, crop_v, approved_v, comment_v, request, profile)
        if not message.startswith("✓"):
            return [gr.skip()] * (len(opened) - 1) + [message]
        target = neighbour(ids, current, 1)
        if target is None:
            return [gr.skip()] * (len(opened) - 2) + [hist, message + " That was the last episode on this page."]
        out = open_episode(target, request, profile)
        out[-1] = message
        return out

    save_next_btn.click(
        save_and_next, [ids_state, *save_inputs], opened, concurrency_limit=TRACES_CONCURRENCY, api_name=False
    ).then(reload_page, [nav_state, *filter_inputs], page_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name=False)

    def whoami(request: gr.Request, profile: gr.OAuthProfile | None) -> str:
        name = annotator_name(app, request, profile)
        if name is None:
            return "**Sign in to annotate.**"
        if name == "anonymous":
            return "Annotations are saved as **anonymous** (start the app with `--auth user:password` to identify annotators)."
        return f"Annotating as **{md_text(name)}**."

    return {
        "refresh": (refresh_list, filter_inputs, list_outputs),
        "who": (whoami, who),
        # For ui.app: another tab puts an episode id in the state, then opens it with the function.
        "open": (open_episode, goto_state, opened),
        "live": (refresh_running, live),  # the timer's tick: the open running episode read again
    }


def episode_header(view: EpisodeView, episode_id: str) -> str:
    parts = [f"**Episode {md_text(episode_id[:12])}**"]
    if view.model:
        parts.append(f"{md_text(view.backend)}: {md_text(view.model)}")
    if view.dialect:
        parts.append(f"dialect {md_text(view.dialect)}")
    if view.started_at:
        parts.append(md_text(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(view.started_at))))
    if view.finished is None:
        live = " (live: read again every few seconds)" if view.status == "running" else ""
        parts.append(f"status **{md_text(view.status)}**{live}")
    return " · ".join(parts)
