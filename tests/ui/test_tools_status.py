"""What the app says about its search tools (start-up log, the Ask tab's settings), from agent.tools.wiring's plan:
the same line per off tool as the CLI, naming the variable that turns it on."""

import gradio as gr

from agent.tools.config import ToolConfig
from agent.tools.wiring import plan_tools
from ui.settings import app_config_from_args, build_parser
from ui.settings_panel import build_settings_panel
from ui.tools_status import startup_lines, tools_markdown


def test_both_tools_off_are_said_with_the_variables_that_turn_them_on():
    plan = plan_tools(ToolConfig(), environ={})
    text = tools_markdown(plan)
    assert "Both search tools are off" in text
    assert plan.off_reasons["text_search"].split(":")[0] in text and "CLOUD\\_VISION\\_API\\_KEY" in text
    lines = startup_lines(plan)
    assert lines[0].startswith("Both search tools are off") and len(lines) == 3
    assert lines[1] == "Text search is off: " + plan.off_reasons["text_search"]


def test_one_tool_off_and_both_on():
    plan = plan_tools(ToolConfig(text_search="searxng", searxng_base_url="http://s"), environ={})
    assert "A search tool is off" in tools_markdown(plan) and "via **searxng**" in tools_markdown(plan)
    assert startup_lines(plan) == ["Image search is off: " + plan.off_reasons["image_search"]]
    on = plan_tools(ToolConfig(text_search="searxng", searxng_base_url="http://s"), {"CLOUD_VISION_API_KEY": "k"})
    assert startup_lines(on) == [] and "off" not in tools_markdown(on)


def test_the_settings_accordion_title_warns_when_both_tools_are_off(monkeypatch):
    for var in ("SERPAPI_API_KEY", "SERPER_API_KEY", "BRAVE_API_KEY", "SEARXNG_BASE_URL", "CLOUD_VISION_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    app = app_config_from_args(build_parser().parse_args(["--examples", "none", "--backend", "openai"]))
    with gr.Blocks() as demo:
        build_settings_panel(app)
    config = demo.get_config_file()
    labels = [c["props"].get("label") for c in config["components"] if c.get("type") == "accordion"]
    values = [str(c["props"].get("value")) for c in config["components"] if c.get("type") == "markdown"]
    assert labels == ["Settings · ⚠ both search tools are off"]
    assert any("Both search tools are off" in v and "SERPAPI\\_API\\_KEY" in v for v in values)
