"""python app.py: the Gradio app (Ask, Traces, Train and Compare tabs), also the Hugging Face Space entry point.

Flags (DESIGN.md §3.7): --host --port --db --model --backend --base-url --dialect, the tool options of
agent/tools/config.py, budgets, and the app options of ui/settings.py. `python app.py --help` lists all.
"""

import logging
import sys

log = logging.getLogger("app")


def main(argv: list[str] | None = None) -> int:
    from ui.settings import app_config_from_args, build_parser

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        app = app_config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in app.startup_warnings():
        log.warning(warning)
    from agent.tools.wiring import plan_tools
    from ui.tools_status import startup_lines

    for line in startup_lines(plan_tools(app.tools)):  # each off tool with the variable that turns it on
        log.warning(line)

    import uvicorn

    from ui.app import create_server

    try:
        server, demo = create_server(app)
    except Exception as exc:  # a foreign or corrupt trace store, an unwritable folder: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from ui.episode import current_runtime

    if app.preload:
        current_runtime().backend(app.model)
    current_runtime().warm_up()  # ends with the GC freeze: before the server takes its first request
    host = "localhost" if app.host in ("127.0.0.1", "0.0.0.0") else app.host
    print(
        f"DeepMMSearch-R1 studio on http://{host}:{app.port}  (traces: {app.db}; model: {app.model.backend}:{app.model.model})",
        flush=True,
    )
    try:
        uvicorn.run(server, host=app.host, port=app.port, log_level="warning", timeout_graceful_shutdown=3)
    finally:
        current_runtime().close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
