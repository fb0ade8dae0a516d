"""Failures as one readable message that says what happened and what to do, never a traceback.

The full traceback goes to the server log (for whoever runs the app); the page gets the message.
"""

from __future__ import annotations

import logging

from agent.images import ImageError
from agent.models.base import BackendError

log = logging.getLogger("ui")


class UserFacingError(Exception):
    """An error whose message is already written for the person using the app."""


def friendly_error(exc: BaseException) -> str:
    """A one-paragraph explanation of `exc` for the page. Unknown errors are logged with their traceback."""
    if isinstance(exc, UserFacingError):
        return str(exc)
    if isinstance(exc, ImageError):
        return f"The image cannot be used: {exc}."  # the message says what is wrong and what would work
    if isinstance(exc, BackendError):
        return f"The model failed ({exc.endpoint}): {exc.message}"
    if isinstance(exc, ModuleNotFoundError):
        return (
            f"A Python package is missing: {exc.name}. Install the app's requirements: pip install -r requirements.txt"
        )
    text = str(exc).splitlines()[0] if str(exc) else ""
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text.lower():
        return (
            "The GPU ran out of memory. Use a smaller model, lower --max-pixels, run one episode at a time "
            "(--max-concurrent-episodes 1), or serve the model with vLLM and use --backend openai."
        )
    if isinstance(exc, ValueError):
        return f"Invalid setting: {text}"
    log.error("unexpected failure", exc_info=exc)
    return f"Something went wrong ({type(exc).__name__}: {text[:300]}). The server log has the details."
