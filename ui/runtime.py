"""Process-wide state of the app: loaded models, tool boxes, the trace store and who may cancel what.

Models and tool boxes are built on first use and cached per config, so the page is up before any
weights load and every session with the same settings shares one model. API keys: the launch-time
OPENAI_API_KEY goes only to the model endpoint configured at launch, SUMMARISER_API_KEY only to the launch
summariser endpoint; an endpoint typed into the settings panel gets no key, so a visitor cannot make the
server send a key to their own host.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from agent.config import ModelConfig, build_backend
from agent.events import Event
from agent.models.base import ModelBackend
from agent.models.transformers_backend import TransformersBackend
from agent.tools.base import Toolbox
from agent.tools.config import SUMMARISER_KEY_VAR, ToolConfig
from agent.tools.wiring import build_toolbox
from traces.background import BackgroundRecorder
from traces.store import TraceStore
from ui.errors import UserFacingError
from ui.preflight import model_problem

log = logging.getLogger("ui")

# build_toolbox's signature: (config, *, summariser_model, environ) -> Toolbox
ToolboxFactory = Callable[..., Toolbox]


@dataclass
class Runtime:
    launch_model: ModelConfig
    launch_tools: ToolConfig
    store: TraceStore
    recorder: BackgroundRecorder  # every event of every episode goes through it
    allow_large_cpu: bool = False
    # Episodes running at once, whether or not their page is still open (an episode outlives a reloaded page).
    max_episodes: int = 1
    build_tools: ToolboxFactory = build_toolbox  # tests count the builds with their own
    _backends: dict[ModelConfig, ModelBackend] = field(default_factory=dict)
    _toolboxes: dict[tuple[ToolConfig, int | None], Toolbox] = field(default_factory=dict)
    _flags: dict[str, threading.Event] = field(default_factory=dict)  # episode id -> cancel flag
    _sessions: dict[str, str] = field(default_factory=dict)  # session -> its running episode id
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _load_locks: dict[ModelConfig, threading.Lock] = field(default_factory=dict)
    _running: int = 0
    _slot_freed: threading.Condition = field(default_factory=threading.Condition)

    # --- models -------------------------------------------------------------------------------------

    def cached_backend(self, cfg: ModelConfig) -> ModelBackend | None:
        """The backend if it is ready to stream now (built, and weights loaded for transformers)."""
        backend = self._backends.get(cfg)
        return backend if backend is not None and _ready(backend) else None

    def backend(self, cfg: ModelConfig) -> ModelBackend:
        """Build (and for transformers, load) the backend for `cfg` once; concurrent callers wait for it."""
        with self._lock:
            ready = self._backends.get(cfg)
            lock = self._load_locks.setdefault(cfg, threading.Lock())
        if ready is not None and _ready(ready):
            return ready
        with lock:
            backend = self._backends.get(cfg)
            if backend is None:
                if cfg.backend == "transformers":
                    problem = model_problem(cfg, cuda_available=_cuda_available(), allow_large_cpu=self.allow_large_cpu)
                    if problem:
                        raise UserFacingError(problem)
                backend = self._build(cfg)
            if isinstance(backend, TransformersBackend):
                backend.load()  # raises BackendError with what to do
            with self._lock:
                self._backends[cfg] = backend
            return backend

    def _build(self, cfg: ModelConfig) -> ModelBackend:
        # Not the launch endpoint: never forward the server's key to a host a visitor chose.
        launch_endpoint = cfg.base_url.rstrip("/") == self.launch_model.base_url.rstrip("/")
        return build_backend(cfg, send_api_key=launch_endpoint)

    # --- tools --------------------------------------------------------------------------------------

    def toolbox(self, tool_config: ToolConfig, backend: ModelBackend | None = None) -> Toolbox:
        """The tool box for `tool_config`, built once; once per model too when the model summarises results.
        (One per model otherwise would mean a Grounding DINO and a set of HTTP pools per endpoint typed in.)"""
        key = (tool_config, id(backend) if tool_config.summarises_with_agent_model() else None)
        with self._lock:
            box = self._toolboxes.get(key)
        if box is None:
            box = self.build_tools(tool_config, summariser_model=backend, environ=self._tool_environ(tool_config))
            with self._lock:
                box = self._toolboxes.setdefault(key, box)
        return box

    def _tool_environ(self, tool_config: ToolConfig) -> Mapping[str, str]:
        """The environment tools read their keys from. A summariser endpoint a visitor chose gets no key."""
        launch = tool_config.summariser_base_url.rstrip("/") == self.launch_tools.summariser_base_url.rstrip("/")
        return os.environ if launch else {k: v for k, v in os.environ.items() if k != SUMMARISER_KEY_VAR}

    def warm_up(self) -> None:
        """Do before serving what the first episode would otherwise do while others stream: build the launch
        toolbox and the TLS context, import the page extractor (trafilatura and lxml take about a second).
        Then freeze what exists for the garbage collector: everything built so far (Gradio, torch, the
        toolbox) lives as long as the process, and frozen it is left out of the collector's full passes,
        which otherwise walked it all and, under load, stopped every stream for 150 ms or more
        (bench/app_load.py). Start-up's garbage is freed first, once."""
        from agent.tls import shared_ssl_context
        from agent.tools.pages import html_to_text

        try:
            shared_ssl_context()
            if not self.launch_tools.summarises_with_agent_model():
                self.toolbox(self.launch_tools)
            html_to_text("<html><body><p>warm-up</p></body></html>")
        except Exception:  # a broken tool setting is reported by the episode that uses it, with what to do
            log.debug("warm-up failed", exc_info=True)
        finally:
            gc.collect()
            gc.freeze()

    # --- recording ----------------------------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Queue `event` for the trace store; it returns at once."""
        self.recorder(event)

    def record_and_wait(self, event: Event) -> None:
        """Record `event` and return once it is written."""
        self.recorder.record_now(event)

    def close(self) -> None:
        """At shutdown: write what is queued and mark episodes still running as interrupted."""
        self.recorder.close()

    # --- episodes running at once ------------------------------------------------------------------

    @contextmanager
    def episode_slot(self, cancel: threading.Event) -> Iterator[bool]:
        """Hold one of `max_episodes` slots while an episode runs; yields False (holding none) when `cancel`
        was set while waiting. Gradio's concurrency limit counts pages; an episode whose page was reloaded
        runs on without one, and this keeps the episodes on the model within the limit all the same."""
        with self._slot_freed:
            while self._running >= self.max_episodes and not cancel.is_set():
                self._slot_freed.wait(timeout=0.5)
            acquired = self._running < self.max_episodes
            self._running += acquired
        if not acquired:
            yield False
            return
        try:
            yield True
        finally:
            with self._slot_freed:
                self._running -= 1
                self._slot_freed.notify()

    def slots_busy(self) -> bool:
        """Whether a new episode would wait for one that is running (perhaps from a page since closed)."""
        with self._slot_freed:
            return self._running >= self.max_episodes

    # --- cancellation -------------------------------------------------------------------------------

    def start_episode(self, session: str, episode_id: str) -> threading.Event:
        """A cancel flag for the episode a session is starting; the session's Stop button sets it."""
        flag = threading.Event()
        with self._lock:
            self._flags[episode_id] = flag
            self._sessions[session] = episode_id
        return flag

    def episode_flag(self, episode_id: str) -> threading.Event:
        with self._lock:
            return self._flags.setdefault(episode_id, threading.Event())

    def cancel(self, session: str) -> bool:
        """Stop the session's running episode; False when it has none."""
        with self._lock:
            flag = self._flags.get(self._sessions.get(session, ""))
        if flag is None or flag.is_set():
            return False
        flag.set()
        return True

    def finish_episode(self, session: str, episode_id: str) -> None:
        with self._lock:
            self._flags.pop(episode_id, None)
            if self._sessions.get(session) == episode_id:
                del self._sessions[session]


def _ready(backend: ModelBackend) -> bool:
    """Whether `backend` can stream now: a local model once its weights are loaded, a served one at once."""
    return not isinstance(backend, TransformersBackend) or backend.loaded


def _cuda_available() -> bool:
    import torch  # only here, at the first question: importing torch costs seconds at start-up

    return torch.cuda.is_available()
