import pytest
from PIL import Image, ImageDraw

from tests.ui.stack import app_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One running app (python app.py) on the scripted endpoint, fake web and tiny Grounding DINO."""
    with app_stack(tmp_path_factory.mktemp("app")) as running:
        yield running


@pytest.fixture(scope="session")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "bridge.png"
    image = Image.new("RGB", (640, 480), (90, 140, 200))
    ImageDraw.Draw(image).rectangle((380, 60, 560, 200), fill=(200, 30, 30))
    image.save(path)
    return str(path)


@pytest.fixture
def runtime_for(tmp_path):
    """Makes the app's Runtime for an AppConfig over a real trace store in tmp_path (closed at the end)."""
    from traces.background import BackgroundRecorder
    from traces.recorder import Recorder
    from traces.store import open_store
    from ui.runtime import Runtime

    made = []

    def make(app, **kwargs):
        store = open_store(tmp_path / f"traces-{len(made)}.db")
        recorder = BackgroundRecorder(Recorder(store, run_kind="demo", run_name="test"))
        made.append(Runtime(launch_model=app.model, launch_tools=app.tools, store=store, recorder=recorder, **kwargs))
        return made[-1]

    yield make
    for runtime in made:
        runtime.close()
