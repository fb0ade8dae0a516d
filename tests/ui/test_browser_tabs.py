"""The Train and Compare tabs in Debian's chromium through Playwright: launch a 3-step SFT of the tiny model
from the form and watch it succeed with a loss chart; open Compare on two eval runs, see the charts, download
one as PNG, click a flipped question and see both trajectories. Screenshots go to artifacts/ui/."""

import re

import pytest

from tests.ui.test_browser import ARTIFACTS, CHROMIUM, FLAGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: install it with `source .ci/setup-browser.sh`"
    ),
]


def field(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def open_group(page, section: str, title: str) -> None:
    """Open a closed accordion of the form section shown."""
    page.locator(f"#train-{section}-section").get_by_text(title, exact=True).click()


def test_train_then_compare_in_a_real_browser(stack, tiny_vlm_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from tests.traces.helpers import synthetic_episode
    from tests.training.helpers import write_sft_file
    from tests.ui.eval_fixtures import record_eval_run
    from traces import jobs as job_rows
    from traces.recorder import Recorder
    from traces.store import open_store

    data = write_sft_file(tmp_path, episodes=4)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300}, accept_downloads=True)
        page.goto(stack.url)
        page.get_by_label("username").fill(stack.auth[0])
        page.get_by_label("password").fill(stack.auth[1])
        page.get_by_role("button", name="Login").click()

        # Train: a 3-step SFT of the tiny model on an exported SFT file.
        page.get_by_role("tab", name="Train").click()
        field(page, "train-sft-model").fill(str(tiny_vlm_dir))
        field(page, "train-sft-data").fill(str(data))
        field(page, "train-sft-output-dir").fill(str(tmp_path / "sft-out"))
        open_group(page, "sft", "Optimisation")
        field(page, "train-sft-max-steps").fill("3")
        field(page, "train-sft-gradient-accumulation-steps").fill("1")
        page.locator("#train-preview").click()
        expect(page.locator("#train-command")).to_contain_text("--max-steps 3", timeout=15_000)
        page.locator("#train-launch").click()
        expect(page.locator("#train-message")).to_contain_text("Started job", timeout=30_000)
        jobs = page.locator("#train-jobs")
        expect(jobs).to_contain_text("succeeded", timeout=180_000)  # refreshed live by the tab's timer
        expect(jobs).to_contain_text("alice")
        expect(page.locator("#train-chart")).to_contain_text("Loss", timeout=15_000)
        expect(field(page, "train-log")).to_have_value(re.compile(r"job \d+: succeeded"))
        page.screenshot(path=str(ARTIFACTS / "train.png"), full_page=True)

        # A GRPO job opens its rollout episodes in the Traces tab.
        with open_store(stack.db) as store:
            rollouts = store.create_run("grpo browser rollouts", "rollout")
            recorder = Recorder(store, run_kind="rollout", run_id=rollouts)
            for event in synthetic_episode(question="Which rollout is this (grpo link)?"):
                recorder(event)
            recorder.close()
            grpo = job_rows.create_job(store, "grpo", "grpo tiny -> runs/grpo-browser", {}, run_id=rollouts)
            job_rows.finish_job(store, grpo, "succeeded")
        page.locator("#train-refresh").click()
        page.locator("#train-jobs").get_by_text("grpo tiny -> runs/grpo-browser").last.click()
        expect(page.locator("#train-job")).to_contain_text(f"Job {grpo}", timeout=15_000)
        page.locator("#train-rollouts").click()
        expect(page.locator("#tr-count")).to_contain_text(re.compile(r"\b1 episodes? match"), timeout=15_000)
        expect(page.locator("#tr-list")).to_contain_text("Which rollout is this (grpo link)?")

        # Compare: the two most recent eval runs are picked by default.
        with open_store(stack.db) as store:
            record_eval_run(store, "browser direct", "direct", 8)
            record_eval_run(store, "browser searcher", "searcher", 8)
        page.get_by_role("tab", name="Compare").click()
        expect(page.locator("#cmp-summary")).to_contain_text("browser searcher", timeout=30_000)
        expect(page.locator("#cmp-summary")).to_contain_text("browser direct")
        expect(page.locator("#cmp-accuracy")).to_contain_text("Accuracy per data source")
        expect(page.locator("#cmp-tools")).to_contain_text("crop search")
        expect(page.locator("#cmp-behaviour")).to_contain_text("Crop rate")
        expect(page.locator("#cmp-pair")).to_contain_text("McNemar")

        flips = page.locator("#cmp-flips")
        expect(flips).to_contain_text("B gains")
        flips.get_by_text("Who built the tower in photo number 3?").last.click()
        expect(page.locator("#cmp-a-chat")).to_contain_text("Nobody", timeout=15_000)
        expect(page.locator("#cmp-b-chat")).to_contain_text("Gustave Eiffel")
        expect(page.locator("#cmp-b-image")).to_contain_text("crop: the tall tower")  # the same panel as Ask
        expect(page.locator("#cmp-b-cards .dm-card").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)

        # Each chart saves itself as PNG from its toolbar (plotly.js in the page, no server round trip).
        page.locator("#cmp-tools .js-plotly-plot").hover()
        with page.expect_download() as download:
            page.locator("#cmp-tools").get_by_role("button", name="Download plot as a PNG").click()
        assert download.value.suggested_filename == "tool-usage.png"
        download.value.save_as(str(ARTIFACTS / "compare-tool-usage.png"))
        assert (ARTIFACTS / "compare-tool-usage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        browser.close()
