"""The app's runtime: one toolbox per tool settings (per model only when the model summarises), keys only
to the endpoints the operator launched with, local models reported ready only once loaded."""

from agent.config import ModelConfig
from agent.tools.base import Toolbox
from agent.tools.config import SUMMARISER_KEY_VAR, ToolConfig
from ui.settings import AppConfig


def test_visitor_endpoints_share_one_toolbox_unless_the_model_summarises(runtime_for):
    built = []
    runtime = runtime_for(AppConfig(), build_tools=lambda config, **kw: built.append(kw) or Toolbox())
    separate = ToolConfig(summariser="openai", summariser_base_url="http://s/v1", summariser_model="s")
    backend_a, backend_b = object(), object()
    assert runtime.toolbox(separate, backend_a) is runtime.toolbox(separate, backend_b)  # one Grounding DINO
    model_summarises = ToolConfig(summariser="model")
    assert runtime.toolbox(model_summarises, backend_a) is not runtime.toolbox(model_summarises, backend_b)
    assert len(built) == 3


def test_api_key_goes_only_to_the_launch_endpoint(monkeypatch, runtime_for):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-operator")
    launch = ModelConfig(backend="openai", model="m", base_url="http://127.0.0.1:8000/v1")
    runtime = runtime_for(AppConfig(model=launch))
    assert runtime.backend(launch)._api_key == "sk-operator"
    visitor = ModelConfig(backend="openai", model="m", base_url="http://visitor.example/v1")
    assert runtime.backend(visitor)._api_key is None


def test_summariser_key_goes_only_to_the_launch_summariser(monkeypatch, runtime_for):
    monkeypatch.setenv(SUMMARISER_KEY_VAR, "sk-summariser")
    launch = ToolConfig(summariser="openai", summariser_base_url="http://127.0.0.1:9000/v1", summariser_model="s")
    environs = []
    runtime = runtime_for(
        AppConfig(tools=launch), build_tools=lambda config, **kw: environs.append(kw["environ"]) or Toolbox()
    )
    runtime.toolbox(launch)
    runtime.toolbox(
        ToolConfig(summariser="openai", summariser_base_url="http://visitor.example/v1", summariser_model="s")
    )
    assert environs[0].get(SUMMARISER_KEY_VAR) == "sk-summariser"
    assert SUMMARISER_KEY_VAR not in environs[1]


def test_a_local_model_is_ready_only_once_loaded(tiny_vlm_dir, runtime_for):
    cfg = ModelConfig(model=str(tiny_vlm_dir), device="cpu")
    runtime = runtime_for(AppConfig(model=cfg))
    assert runtime.cached_backend(cfg) is None
    backend = runtime.backend(cfg)
    assert backend.loaded and runtime.cached_backend(cfg) is backend


def test_episodes_beyond_the_limit_wait_for_a_slot_even_when_their_pages_are_gone(runtime_for):
    import threading
    import time

    runtime = runtime_for(AppConfig(), max_episodes=1)
    order, running = [], threading.Event()

    def first():  # an episode whose page was reloaded: it holds its slot until it ends
        with runtime.episode_slot(threading.Event()) as started:
            order.append(("first", started))
            running.set()
            time.sleep(0.3)
            order.append(("first done", True))

    thread = threading.Thread(target=first)
    thread.start()
    running.wait(5)
    assert runtime.slots_busy()
    with runtime.episode_slot(threading.Event()) as started:
        order.append(("second", started))
    thread.join()
    assert order == [("first", True), ("first done", True), ("second", True)] and not runtime.slots_busy()
    stopped = threading.Event()
    with runtime.episode_slot(threading.Event()):
        stopped.set()  # Stop pressed while waiting: it gives up without a slot
        with runtime.episode_slot(stopped) as started:
            assert started is False
