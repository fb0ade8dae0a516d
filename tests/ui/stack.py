"""A whole local stack for the app tests and bench/app_load.py: a scripted chat endpoint, a fake web
(SearXNG text search, Cloud Vision image search, an OpenAI-format summariser) and the tiny Grounding DINO,
with `python app.py` started on top as a real process (its real entry point, flags and start-up path)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]

XSS_TITLE = "<script>alert('title')</script><img src=x onerror=alert('title-img')> Golden Gate"
XSS_SNIPPET = "<b onmouseover=alert('snippet')>bold</b> [link](javascript:alert('md')) &lt;svg onload=alert(4)&gt;"
MODEL_XSS = "<img src=x onerror=alert('model')>"

# Three turns: crop search (region), text search, answer. Model output carries markup that must stay text.
TURNS = [
    f"<reason>The sign may identify the place {MODEL_XSS} so I crop it.</reason><img_search>the red sign</img_search>",
    "<reason>The crop shows a bridge; search for its opening year.</reason><text_search>golden gate bridge opening year</text_search>",
    "<reason>The pages say **1937** [x](javascript:alert('link')).</reason><answer>1937 <script>alert('answer')</script></answer>",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    url: str
    chat_base_url: str
    web_base_url: str
    db: Path
    log: Path
    process: subprocess.Popen
    auth: tuple[str, str] | None


def app_command(
    port: int,
    db: Path,
    chat_base_url: str,
    web_base_url: str,
    grounding: Path,
    *,
    auth: str | None,
    extra: Sequence[str] = (),
) -> list[str]:
    cmd = [
        sys.executable,
        str(ROOT / "app.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        str(db),
        "--backend",
        "openai",
        "--model",
        "scripted-model",
        "--base-url",
        chat_base_url,
        "--text-search",
        "searxng",
        "--searxng-base-url",
        web_base_url,
        "--allow-private-fetch",
        "--image-search",
        "cloud_vision",
        "--cloud-vision-base-url",
        web_base_url,
        "--summariser",
        "openai",
        "--summariser-base-url",
        web_base_url + "/v1",
        "--summariser-model",
        "fake-summariser",
        "--grounding-model",
        str(grounding),
        "--box-threshold",
        "0",
        "--text-threshold",
        "0",
        "--tool-cache",
        "",
        "--examples",
        "",
    ]
    if auth:
        cmd += ["--auth", auth]
    return cmd + list(extra)


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 60.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"app not up after {timeout_s}s:\n{log.read_text()[-3000:]}")


@contextmanager
def app_stack(
    workdir: Path,
    *,
    turns=TURNS,
    token_delay_s: float = 0.0,
    auth: str | None = "alice:wonderland",
    hits=None,
    extra: Sequence[str] = (),
) -> Iterator[Stack]:
    from agent.tools.grounding import write_tiny_grounding
    from tests.servers.chat_completions import scripted_chat_server
    from tests.servers.search_providers import Hit, fake_web

    workdir.mkdir(parents=True, exist_ok=True)
    grounding = workdir / "grounding"
    if not (grounding / "config.json").exists():
        write_tiny_grounding(grounding)
    with ExitStack() as stack:
        web = stack.enter_context(fake_web(hits if hits is not None else []))
        if hits is None:
            web.default_pages(3)
            web.hits.insert(0, Hit(XSS_TITLE, web.url("/pages/p1"), XSS_SNIPPET, "javascript:alert('thumb')"))
        chat = stack.enter_context(scripted_chat_server(turns, token_delay_s=token_delay_s))
        port = free_port()
        db = workdir / "traces.db"
        log = workdir / "app.log"
        env = {
            **os.environ,
            "CLOUD_VISION_API_KEY": "test-key",
            "PYTHONUNBUFFERED": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        env.pop("OPENAI_API_KEY", None)
        with open(log, "w") as out:
            process = subprocess.Popen(
                app_command(port, db, chat.base_url, web.base_url, grounding, auth=auth, extra=extra),
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_for_http(url, process, log)
            user = tuple(auth.split(":", 1)) if auth else None
            yield Stack(url, chat.base_url, web.base_url, db, log, process, user)  # type: ignore[arg-type]
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
