"""Process-wide state of the app: loaded models, tool boxes, the trace store and who may cancel what.

Models and tool boxes are built on first use and cached per config, so the page is up before any
weights load and every session with the same settings shares one model. API keys: the launch-time
OPENAI_API_KEY goes only to the endpoint configured at launch; an endpoint typed into the settings
panel gets no key, so a visitor cannot make the server send its key to their own host.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import ModelConfig, build_backend
from agent.models.base import ModelBackend
from agent.tools.base import Toolbox
from ui.errors import UserFacingError
from ui.preflight import model_problem

log = logging.getLogger("ui")


@dataclass
class Runtime:
    launch_model: ModelConfig
    store: Any  # traces.TraceStore
    recorder: Callable[[Any], None]  # traces Recorder or BackgroundRecorder: called with every event of every episode
    toolbox_factory: Callable[[Any, Any], Toolbox]  # (ToolConfig, backend) -> Toolbox
    allow_large_cpu: bool = False
    _backends: dict[ModelConfig, ModelBackend] = field(default_factory=dict)
    _toolboxes: dict[str, Toolbox] = field(default_factory=dict)
    _flags: dict[str, threading.Event] = field(default_factory=dict)  # episode id -> cancel flag
    _sessions: dict[str, str] = field(default_factory=dict)  # session -> its running episode id
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _load_locks: dict[ModelConfig, threading.Lock] = field(default_factory=dict)

    # --- models -------------------------------------------------------------------------------------

    def cached_backend(self, cfg: ModelConfig) -> ModelBackend | None:
        """The backend if it is ready to stream now (built, and weights loaded for transformers)."""
        backend = self._backends.get(cfg)
        if backend is None or (cfg.backend == "transformers" and not getattr(backend, "loaded", True)):
            return None
        return backend

    def backend(self, cfg: ModelConfig) -> ModelBackend:
        """Build (and for transformers, load) the backend for `cfg` once; concurrent callers wait for it."""
        with self._lock:
            ready = self._backends.get(cfg)
            lock = self._load_locks.setdefault(cfg, threading.Lock())
        if ready is not None and getattr(ready, "loaded", True):
            return ready
        with lock:
            backend = self._backends.get(cfg)
            if backend is None:
                if cfg.backend == "transformers":
                    problem = model_problem(cfg, cuda_available=_cuda_available(), allow_large_cpu=self.allow_large_cpu)
                    if problem:
                        raise UserFacingError(problem)
                backend = self._build(cfg)
            load = getattr(backend, "load", None)
            if load is not None:
                load()  # raises BackendError with what to do
            with self._lock:
                self._backends[cfg] = backend
            return backend

    def _build(self, cfg: ModelConfig) -> ModelBackend:
        # Not the launch endpoint: never forward the server's key to a host a visitor chose.
        launch_endpoint = cfg.base_url.rstrip("/") == self.launch_model.base_url.rstrip("/")
        return build_backend(cfg, send_api_key=launch_endpoint)

    # --- tools --------------------------------------------------------------------------------------

    def toolbox(self, tool_config: Any, backend: ModelBackend | None = None) -> Toolbox:
        """The tool box for `tool_config`, built once; once per model too when the model summarises results.
        (One per model otherwise would mean a Grounding DINO and a set of HTTP pools per endpoint typed in.)"""
        key = f"{tool_config!r}|{id(backend)}" if tool_config.summarises_with_agent_model() else repr(tool_config)
        with self._lock:
            box = self._toolboxes.get(key)
        if box is None:
            box = self.toolbox_factory(tool_config, backend)
            with self._lock:
                box = self._toolboxes.setdefault(key, box)
        return box

    def warm_up(self, tool_config: Any) -> None:
        """Do at start-up, in the background, what the first episode would otherwise do while others stream:
        build the launch toolbox, the TLS context and import the page extractor (trafilatura and lxml take
        about a second). Then freeze what exists for the garbage collector (below)."""
        from agent.tls import shared_ssl_context
        from agent.tools.pages import html_to_text

        try:
            shared_ssl_context()
            if not tool_config.summarises_with_agent_model():
                self.toolbox(tool_config)
            html_to_text("<html><body><p>warm-up</p></body></html>")
        except Exception:  # a broken tool setting is reported by the episode that uses it, with what to do
            log.debug("warm-up failed", exc_info=True)
        finally:
            # What exists now (Gradio, torch, the toolbox) lives as long as the process. Frozen, it is left
            # out of the collector's full passes, which otherwise walked it all and, under load, stopped
            # every stream for 150 ms or more (bench/app_load.py). Start-up's garbage is freed first, once.
            gc.collect()
            gc.freeze()

    # --- recording ----------------------------------------------------------------------------------

    def record_and_wait(self, event: Any) -> None:
        """Record `event` and return once it is written (the recorder may otherwise queue its writes)."""
        getattr(self.recorder, "record_now", self.recorder)(event)

    def close(self) -> None:
        """At shutdown: write what is queued and mark episodes still running as interrupted."""
        close = getattr(self.recorder, "close", None)
        if close is not None:
            close()

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


def _cuda_available() -> bool:
    import torch  # only here, at the first question: importing torch costs seconds at start-up

    return torch.cuda.is_available()
