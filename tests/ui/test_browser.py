"""End to end in Debian's chromium through Playwright (DESIGN.md §4): ask, watch it stream, check the crop
box, result cards and answer, check hostile markup stays inert, then annotate the recorded episode with
the keyboard in the Traces tab (its list row says so at once). Then what goes wrong: why an episode cannot
start, or stopped, is in the answer box; a malformed turn shows what the model wrote; a page reloaded
mid-episode offers to reopen it, live, in the Traces tab. Screenshots go to artifacts/ui/."""

import sqlite3
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "ui"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: install it with `source .ci/setup-browser.sh`"
    ),
]


def test_ask_then_review_in_a_real_browser(stack, photo):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.add_init_script("window.__xss = []; window.alert = (m) => window.__xss.push(String(m));")
        page.goto(stack.url)
        # gradio's login page
        page.get_by_label("username").fill(stack.auth[0])
        page.get_by_label("password").fill(stack.auth[1])
        page.get_by_role("button", name="Login").click()

        page.locator("#ask-input-image input[type=file]").set_input_files(photo)
        page.locator("#ask-question textarea").fill("When did this bridge open (browser)?")
        page.locator("#ask-button").click()

        chat = page.locator("#ask-chat")
        expect(chat).to_contain_text("Turn 1", timeout=30_000)
        expect(page.locator("#ask-answer")).to_contain_text("1937", timeout=60_000)
        expect(chat).to_contain_text("crop search")
        expect(chat).to_contain_text("text search")
        expect(page.locator("#ask-cards .dm-card").first).to_be_visible()
        expect(page.locator("#ask-image")).to_contain_text("crop: the red sign")  # the box's legend
        expect(page.locator("#ask-crop img")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "ask.png"), full_page=True)

        # Hostile titles/snippets (tools) and model output (chat, answer) are text: no element, no script ran.
        cards = page.locator("#ask-cards")
        expect(cards).to_contain_text("Golden Gate")
        assert (
            page.locator("#ask-cards script, #ask-cards [onerror], #ask-cards [onmouseover], #ask-cards svg").count()
            == 0
        )
        assert page.locator("#ask-chat script, #ask-chat [onerror], #ask-chat a[href^='javascript']").count() == 0
        chat.get_by_role("button", name="Turn 1").first.click()  # finished blocks are collapsed: open one
        expect(chat).to_contain_text("onerror=alert('model')")  # shown literally
        expect(chat).to_contain_text("<script>alert('answer')</script>")
        expect(page.locator("#ask-answer")).to_contain_text("<script>alert('answer')</script>")
        for link in page.locator("#ask-cards a").all():
            assert link.get_attribute("href").startswith("http") and "noopener" in link.get_attribute("rel")

        # Traces tab: open the recorded episode and annotate it with the keyboard.
        page.get_by_role("tab", name="Traces").click()
        expect(page.locator("#tr-list")).to_contain_text("When did this bridge open (browser)?", timeout=15_000)
        search = page.locator("#tr-search textarea, #tr-search input").first
        search.fill("browser")  # other tests share this app: narrow the list to this episode
        search.press("Enter")
        expect(page.locator("#tr-count")).to_contain_text("1 episode matches", timeout=15_000)
        search.press("Escape")  # leave the field: shortcuts are inert while typing
        page.keyboard.press("j")
        expect(page.locator("#tr-chat")).to_contain_text("1937", timeout=15_000)
        expect(page.locator("#tr-image")).to_contain_text("crop: the red sign")  # same renderer as live
        # typing "1" in a text field types it and toggles nothing
        page.locator("#tr-comment textarea").fill("")
        page.locator("#tr-comment textarea").type("crop 1 j")
        assert page.locator("#tr-labels input[type=checkbox]:checked").count() == 0
        page.keyboard.press("Escape")
        page.keyboard.press("1")
        expect(page.locator("#tr-labels input[type=checkbox]").first).to_be_checked()
        page.keyboard.press("Control+Enter")
        expect(page.locator("#tr-save-status")).to_contain_text("Saved as alice", timeout=15_000)
        review_cell = page.locator("#tr-list [role=row]").nth(1).locator("[role=gridcell]").nth(6)
        expect(review_cell).not_to_have_text("none", timeout=15_000)  # the row says it at once, without a reload
        shown_review = review_cell.inner_text().strip()
        page.screenshot(path=str(ARTIFACTS / "traces.png"), full_page=True)
        xss = page.evaluate("window.__xss")
        browser.close()

    assert dialogs == [] and xss == []
    with sqlite3.connect(stack.db) as db:
        annotator, labels, comment = db.execute(
            "select annotator, labels, comment from annotations order by id desc limit 1"
        ).fetchone()
    assert annotator == "alice" and comment == "crop 1 j" and labels.startswith('["')
    with sqlite3.connect(stack.db) as db:
        (review,) = db.execute("select review_state from episodes where question like '%(browser)%'").fetchone()
    assert shown_review == review


def _login(page, stack):
    page.goto(stack.url)
    page.get_by_label("username").fill(stack.auth[0])
    page.get_by_label("password").fill(stack.auth[1])
    page.get_by_role("button", name="Login").click()


def _use_endpoint(page, base_url: str) -> None:
    from playwright.sync_api import expect

    endpoint = page.locator("#ask-endpoint textarea")
    if not endpoint.is_visible():  # a click on an open accordion would close it
        page.locator("#ask-settings").get_by_text("Settings").first.click()
    expect(endpoint).to_be_visible()
    expect(endpoint).to_be_enabled()
    endpoint.click()
    endpoint.fill(base_url)
    endpoint.press("Tab")  # leave the field: its value is the page's before Ask is clicked
    # A field just shown can still be set to its initial value by the page (seen under a loaded CI machine): the
    # typed value must be what the field holds before Ask is clicked.
    expect(endpoint).to_have_value(base_url)


def test_what_went_wrong_is_in_the_answer_box_and_a_reloaded_page_reopens_its_episode(stack, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from tests.servers.chat_completions import scripted_chat_server

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    not_a_photo = tmp_path / "holiday.jpg"
    not_a_photo.write_text("Dear all, the photos follow in the next mail.")
    slow_turn = "<reason>" + " ".join(f"w{i}" for i in range(200)) + "</reason><answer>slowly</answer>"
    with (
        scripted_chat_server(["\n" * 2000] * 6) as blank,  # a model that writes only line breaks
        scripted_chat_server([slow_turn], token_delay_s=0.03) as slow,  # 6 s of tokens
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        _login(page, stack)
        answer = page.locator("#ask-answer")

        # Nothing asked: the answer box says so and what to do (not a collapsed chat block).
        page.locator("#ask-button").click()
        expect(answer).to_contain_text("Nothing to ask", timeout=15_000)
        expect(answer).to_contain_text("Type a question")

        # A file that is not an image: named, with what would work; no server path.
        page.locator("#ask-input-image input[type=file]").set_input_files(str(not_a_photo))
        page.locator("#ask-question textarea").fill("What is in this picture?")
        page.locator("#ask-button").click()
        expect(answer).to_contain_text("Cannot start", timeout=15_000)
        expect(answer).to_contain_text("holiday.jpg: not an image")
        expect(answer).to_contain_text("JPEG, PNG")
        assert "/tmp" not in answer.inner_text()
        page.reload()  # a fresh form (and nothing ran, so nothing is offered for reopening)
        expect(page.locator("#ask-button")).to_be_enabled()
        expect(page.locator("#ask-reopen-row")).to_be_hidden()

        # A model that writes only line breaks: the episode stops on format_error; the answer box says why and
        # what to do and shows what was written; so does the malformed turn's block.
        _use_endpoint(page, blank.base_url)
        page.locator("#ask-question textarea").fill("Which tower is this (blank model)?")
        page.locator("#ask-button").click()
        expect(answer).to_contain_text("status format_error", timeout=60_000)
        expect(answer).to_contain_text("Dialect")
        expect(answer).to_contain_text("⏎ ×2000")
        chat = page.locator("#ask-chat")
        chat.get_by_role("button", name="Turn 1 · malformed").first.click()
        expect(chat).to_contain_text("⏎ ×2000")
        page.screenshot(path=str(ARTIFACTS / "ask-malformed.png"), full_page=True)

        # Reloaded mid-episode: the episode runs on; the page offers to reopen it in the Traces tab, live.
        _use_endpoint(page, slow.base_url)
        page.locator("#ask-question textarea").fill("Will this survive a reload?")
        page.locator("#ask-button").click()
        expect(chat).to_contain_text("w5", timeout=30_000)
        page.reload()
        expect(page.locator("#ask-reopen-note")).to_contain_text("still running", timeout=30_000)
        expect(page.locator("#ask-reopen-note")).to_contain_text("Will this survive a reload?")
        page.locator("#ask-reopen").click()
        expect(page.locator("#tr-header")).to_contain_text("running", timeout=15_000)
        expect(page.locator("#tr-answer")).to_contain_text("Running")
        expect(page.locator("#tr-chat")).to_contain_text("w1")  # as recorded so far
        page.screenshot(path=str(ARTIFACTS / "traces-live.png"), full_page=True)
        expect(page.locator("#tr-answer")).to_contain_text("slowly", timeout=60_000)  # refreshed until it ended
        browser.close()
