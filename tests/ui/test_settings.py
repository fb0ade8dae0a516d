"""The app's settings: flags from the config dataclass (flag > environment > default), settings locked by
default where others can reach the app, and endpoints a visitor types checked as page fetches are."""

import argparse

import pytest

from agent.flags import describe_config
from ui.errors import UserFacingError
from ui.exposure import check_visitor_endpoint, loopback_only
from ui.settings import NOT_FLAGS, AppConfig, app_config_from_args, build_parser, resolve_settings

OPENAI = ["--backend", "openai", "--base-url", "http://10.0.0.5:8000/v1", "--examples", ""]


def _app(*flags: str, environ: dict | None = None) -> AppConfig:
    return app_config_from_args(build_parser().parse_args([*OPENAI, *flags]), environ=environ or {})


def test_every_app_setting_is_a_flag_with_help_or_comes_from_the_environment():
    usage = {word.strip("[],") for word in build_parser().format_help().split()}
    for row in describe_config(AppConfig):
        assert row["help"], row["name"]
        if row["name"] not in NOT_FLAGS:
            assert row["flag"] in usage, row["name"]
    assert "--space-id" not in usage and "--oauth" not in usage  # set by Spaces, through the environment


def test_flags_win_over_environment_and_environment_over_defaults():
    environ = {"GRADIO_SERVER_PORT": "9000", "TRACES_DB": "env.db", "APP_AUTH": "a:b", "PRELOAD_MODEL": "1"}
    app = _app("--port", "9100", environ=environ)
    assert (app.port, app.db, app.auth, app.preload) == (9100, "env.db", (("a", "b"),), True)
    assert _app().port == 7860 and _app().host == "127.0.0.1"
    assert _app("--labels", "a, b,,c").labels == ("a", "b", "c")
    assert _app("--max-concurrent-episodes", "3").max_concurrent_episodes == 3
    assert _app().max_concurrent_episodes == 32  # a served model: many episodes at once


@pytest.mark.parametrize(
    "flags,environ,message",
    [
        (["--auth", "nopassword"], {}, "user:password"),
        (["--lock-settings", "--unlock-settings"], {}, "contradict"),
        (["--crops-route", "/"], {}, "URL path"),
        (["--max-concurrent-episodes", "0"], {}, "at least 1"),
    ],
)
def test_bad_app_settings_are_one_clear_error(flags, environ, message):
    with pytest.raises(ValueError, match=message):
        _app(*flags, environ=environ)


@pytest.mark.parametrize(
    "flags,environ,locked",
    [
        ([], {}, False),  # loopback only: the operator's own machine
        (["--host", "0.0.0.0"], {}, True),  # beyond loopback, no login
        (["--host", "0.0.0.0", "--auth", "alice:pw"], {}, False),  # beyond loopback, behind a login
        ([], {"SPACE_ID": "org/space"}, True),  # a Space, whatever else
        (["--auth", "alice:pw"], {"SPACE_ID": "org/space", "GRADIO_SERVER_NAME": "0.0.0.0"}, True),
        (["--host", "0.0.0.0", "--unlock-settings"], {}, False),  # the operator's override
        ([], {"SPACE_ID": "org/space", "UNLOCK_SETTINGS": "1"}, False),  # the override on a Space (env only)
        (["--lock-settings"], {}, True),
    ],
)
def test_settings_are_locked_by_default_where_others_can_reach_the_app(flags, environ, locked):
    assert _app(*flags, environ=environ).settings_locked is locked


def test_unlocking_a_public_app_is_warned_about_and_a_private_one_is_not():
    assert "--unlock-settings" in _app("--host", "0.0.0.0", "--unlock-settings").startup_warnings()[0]
    assert _app("--unlock-settings").startup_warnings() == []
    assert _app("--host", "0.0.0.0").startup_warnings() == []


def test_a_locked_app_ignores_a_typed_endpoint_model_and_providers():
    app = _app("--host", "0.0.0.0")
    form = {"base_url": "http://169.254.169.254/v1", "model": "x", "text_search": "off", "box_threshold": 0.2}
    model, tools, _ = resolve_settings(app, {**form, "summariser_base_url": "http://127.0.0.1:1/v1"})
    assert (model.base_url, model.model, tools.text_search) == (app.model.base_url, app.model.model, "auto")
    assert tools.summariser_base_url == "" and tools.box_threshold == 0.2


@pytest.mark.parametrize(
    "field,url",
    [
        ("base_url", "http://127.0.0.1:8000/v1"),
        ("base_url", "http://localhost:8000/v1"),  # a name that resolves to loopback
        ("base_url", "http://169.254.169.254/latest"),  # cloud metadata
        ("base_url", "http://[::1]:8000/v1"),
        ("base_url", "http://192.168.1.20/v1"),
        ("summariser_base_url", "http://10.1.2.3:8000/v1"),
    ],
)
def test_a_public_app_refuses_endpoints_a_visitor_points_at_private_addresses(field, url):
    app = _app("--host", "0.0.0.0", "--auth", "alice:pw")  # unlocked: a login guards it
    with pytest.raises(UserFacingError, match="private, loopback or link-local"):
        resolve_settings(app, {field: url})


def test_a_public_app_keeps_the_operators_own_private_endpoint_and_accepts_public_ones():
    app = _app("--host", "0.0.0.0", "--auth", "alice:pw")
    assert resolve_settings(app, {"base_url": "http://10.0.0.5:8000/v1/"})[0].base_url == "http://10.0.0.5:8000/v1/"
    assert resolve_settings(app, {"base_url": "https://93.184.216.34/v1"})[0].base_url == "https://93.184.216.34/v1"


def test_an_app_on_loopback_lets_its_user_type_any_endpoint():
    assert resolve_settings(_app(), {"base_url": "http://127.0.0.1:9/v1"})[0].base_url == "http://127.0.0.1:9/v1"


def test_endpoint_checks_say_what_is_wrong():
    with pytest.raises(UserFacingError, match="http"):
        check_visitor_endpoint("file:///etc/passwd", "model endpoint")
    with pytest.raises(UserFacingError, match="cannot resolve"):
        check_visitor_endpoint("http://no-such-host.invalid/v1", "model endpoint")


@pytest.mark.parametrize(
    "host,only", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("myhost", False)]
)
def test_loopback_only(host, only):
    assert loopback_only(host) is only


def test_parser_has_no_conflicting_flags():
    assert isinstance(build_parser(), argparse.ArgumentParser)
