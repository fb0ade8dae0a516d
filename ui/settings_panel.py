"""The Settings accordion of the Ask tab: model, endpoint, dialect, tool providers, summariser, grounding
thresholds and budgets. Values go to `ui.settings.resolve_settings` with every question; nothing here holds
secrets. Where the settings are locked (ui.settings), the fields visitors may not change are disabled.
Which search tools are off, and the variable that turns each on, is said in the accordion (and its title
when both are off), and again when a provider is changed."""

import dataclasses
from dataclasses import dataclass

import gradio as gr

from agent.protocol import DIALECTS
from agent.tools.config import IMAGE_PROVIDERS, TEXT_PROVIDERS
from agent.tools.wiring import plan_tools
from ui.settings import AppConfig, settings_defaults
from ui.tools_status import both_searches_off, tools_markdown


@dataclass
class SettingsPanel:
    keys: list[str]
    components: list[gr.components.Component]


def build_settings_panel(app: AppConfig) -> SettingsPanel:
    values = settings_defaults(app)
    locked = app.settings_locked
    keys: list[str] = []
    components: list[gr.components.Component] = []

    def add(key: str, component: gr.components.Component) -> None:
        keys.append(key)
        components.append(component)

    plan = plan_tools(app.tools)
    title = "Settings · ⚠ both search tools are off" if both_searches_off(plan) else "Settings"
    with gr.Accordion(title, open=False, elem_id="ask-settings"):
        tools_note = gr.Markdown(tools_markdown(plan), elem_id="ask-tools-status")
        if locked:
            gr.Markdown(
                "This deployment fixes the model, endpoints and search providers; budgets, dialect and grounding "
                "thresholds can be changed.",
                elem_id="ask-settings-locked",
            )
        with gr.Row():
            add(
                "model",
                gr.Textbox(
                    values["model"], label="Model (hub id, local folder, or served name)", interactive=not locked
                ),
            )
            add(
                "backend",
                gr.Dropdown(
                    ["transformers", "openai"], value=values["backend"], label="Backend", interactive=not locked
                ),
            )
            add(
                "base_url",
                gr.Textbox(
                    values["base_url"],
                    label="Endpoint (openai backend)",
                    interactive=not locked,
                    elem_id="ask-endpoint",
                    info="The server's API key is only ever sent to the endpoint it was started with.",
                ),
            )
            add("dialect", gr.Dropdown(sorted(DIALECTS), value=values["dialect"], label="Dialect"))
        with gr.Row():
            add(
                "text_search",
                gr.Dropdown(
                    list(TEXT_PROVIDERS),
                    value=values["text_search"],
                    label="Text search provider",
                    interactive=not locked,
                ),
            )
            add(
                "image_search",
                gr.Dropdown(
                    list(IMAGE_PROVIDERS),
                    value=values["image_search"],
                    label="Image search provider",
                    interactive=not locked,
                ),
            )
        with gr.Row():
            add(
                "summariser_base_url",
                gr.Textbox(
                    values["summariser_base_url"],
                    label="Summariser endpoint (OpenAI-compatible; empty: the agent's model or snippets)",
                    interactive=not locked,
                    elem_id="ask-summariser-endpoint",
                    info="SUMMARISER_API_KEY is only ever sent to the endpoint the app was started with.",
                ),
            )
            add(
                "summariser_model",
                gr.Textbox(values["summariser_model"], label="Summariser model", interactive=not locked),
            )
            add(
                "grounding_model",
                gr.Textbox(values["grounding_model"], label="Grounding DINO model", interactive=not locked),
            )
            add(
                "box_threshold",
                gr.Slider(0.0, 1.0, value=values["box_threshold"], step=0.01, label="Box threshold"),
            )
            add(
                "text_threshold",
                gr.Slider(0.0, 1.0, value=values["text_threshold"], step=0.01, label="Text threshold"),
            )
        with gr.Row():
            add(
                "max_image_searches",
                gr.Number(values["max_image_searches"], label="Image searches", precision=0, minimum=0),
            )
            add("max_tool_calls", gr.Number(values["max_tool_calls"], label="Tool calls", precision=0, minimum=0))
            add(
                "max_response_tokens",
                gr.Number(values["max_response_tokens"], label="Response tokens", precision=0, minimum=1),
            )
            add("max_turns", gr.Number(values["max_turns"], label="Turns", precision=0, minimum=1))
    text_search, image_search = (components[keys.index(name)] for name in ("text_search", "image_search"))

    def providers_changed(text: str, image: str) -> str:
        return tools_markdown(plan_tools(dataclasses.replace(app.tools, text_search=text, image_search=image)))

    for dropdown in (text_search, image_search):
        dropdown.input(providers_changed, [text_search, image_search], tools_note, queue=False, api_name=False)
    return SettingsPanel(keys, components)
