"""Safe by default when public, through the API (gradio_client) and in the page: an app listening beyond
loopback without a login locks its settings (a typed endpoint is ignored, the fields are disabled); unlocked,
it refuses an endpoint a visitor points at a loopback address, and never dials it."""

from pathlib import Path

import pytest
from gradio_client import Client

from tests.servers.chat_completions import scripted_chat_server
from tests.ui.stack import app_stack
from tests.ui.test_browser import CHROMIUM, FLAGS

REFUSED = "points to a private, loopback"


@pytest.fixture(scope="module")
def visitor_server():
    """An endpoint a visitor types: on loopback, where a public app must never send requests for them."""
    with scripted_chat_server(["<reason>visitor</reason><answer>from the visitor's server</answer>"]) as server:
        yield server


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    with app_stack(tmp_path_factory.mktemp("locked"), auth=None, extra=["--host", "0.0.0.0"]) as running:
        yield running


@pytest.fixture(scope="module")
def unlocked(tmp_path_factory):
    extra = ["--host", "0.0.0.0", "--unlock-settings"]
    with app_stack(tmp_path_factory.mktemp("unlocked"), auth=None, extra=extra) as running:
        yield running


def _ask_with_endpoint(stack, endpoint: str) -> str:
    client = Client(stack.url, verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/ask"]["parameters"]
    labels = [p["label"] for p in api]
    args = [p.get("parameter_default") for p in api]
    args[labels.index("Question")] = "Whose server answers?"
    args[labels.index("Endpoint (openai backend)")] = endpoint
    job = client.submit(*args, api_name="/ask")
    job.result(timeout=120)
    final = job.outputs()[-1]
    return str(final[0]) + str(final[1])  # the chat and the answer box


def test_api_a_locked_public_app_ignores_a_typed_endpoint(locked, visitor_server):
    text = _ask_with_endpoint(locked, visitor_server.base_url)
    assert "1937" in text and "visitor" not in text  # the operator's endpoint answered
    assert visitor_server.requests == []
    assert "--unlock-settings" not in Path(locked.log).read_text()  # nothing unlocked, nothing warned


def test_api_an_unlocked_public_app_refuses_a_loopback_endpoint_and_never_dials_it(unlocked, visitor_server):
    text = _ask_with_endpoint(unlocked, visitor_server.base_url)
    assert REFUSED in text and "Traceback" not in text
    assert visitor_server.requests == []
    assert "--unlock-settings: visitors can change" in Path(unlocked.log).read_text()  # the operator was warned


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: `source .ci/setup-browser.sh`")
def test_page_locked_fields_are_disabled_and_unlocked_refusals_are_shown(locked, unlocked, visitor_server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(locked.url)
        page.locator("#ask-settings").get_by_text("Settings").first.click()
        expect(page.locator("#ask-settings-locked")).to_contain_text("fixes the model, endpoints")
        expect(page.locator("#ask-endpoint textarea")).to_be_disabled()

        page.goto(unlocked.url)
        expect(page.locator("#ask-button")).to_be_enabled()
        page.locator("#ask-settings").get_by_text("Settings").first.click()
        endpoint = page.locator("#ask-endpoint textarea")
        expect(endpoint).to_be_visible()
        expect(endpoint).to_be_enabled()
        endpoint.click()
        endpoint.fill(visitor_server.base_url)
        endpoint.press("Tab")  # leave the field, as a person would: its value is the page's before Ask is clicked
        expect(endpoint).to_have_value(visitor_server.base_url)
        page.locator("#ask-question textarea").fill("Whose server answers (page)?")
        page.locator("#ask-button").click()
        answer = page.locator("#ask-answer")  # why it cannot start is in the answer box, in plain view
        expect(answer).to_contain_text("Cannot start", timeout=30_000)
        expect(answer).to_contain_text(REFUSED)
        browser.close()
    assert visitor_server.requests == []
