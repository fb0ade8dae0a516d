"""A component's own pre- and postprocessing, run in the caller's thread, for the streaming Ask event.

Gradio runs `preprocess` for every input and `postprocess` for every output of every frame each in a
worker thread of its own, a thread hop apiece. With 20 episodes streaming on two cores those hops cost
more than the work itself: episodes took up to a second to start, and frames queued behind each other.
The Ask event is registered with `preprocess=False, postprocess=False` and does both here, with the
components' own methods, so what the function sees and what the page gets are exactly what Gradio would
have made. Gradio still checks uploads against its upload folder and validates data models first.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.data_classes import GradioModel, GradioRootModel


def preprocessed(component: gr.components.Component, value: Any) -> Any:
    """What `component.preprocess` gives the function for a raw (already cache-checked) input value."""
    model = getattr(component, "data_model", None)
    if model is not None and value is not None:
        value = model.model_validate(value)
    return component.preprocess(value)


def payload(component: gr.components.Component, value: Any) -> Any:
    """What Gradio itself would send to the page for `value`: the component's postprocess, serialised."""
    out = component.postprocess(value)
    return out.model_dump() if isinstance(out, GradioModel | GradioRootModel) else out
