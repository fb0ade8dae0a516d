"""The Ask tab's uploaded image, taken as Gradio received it, so that our own checks are the only ones.

`gr.Image` opens every upload with Pillow while it preprocesses an event's inputs, before our function runs:
a file that is not an image then fails with Pillow's own words and the server's temporary path, and a huge
photo is decoded in full. So the Ask event runs with `preprocess=False` and reads the image's payload here
(Gradio has already moved the file into its upload folder and checked that it lies there): `Upload` is that
file and the name it had on the user's machine. `agent.images.load_image` then checks it and says, by that
name, what is wrong and what would work. The event's other inputs go through their components' own
`preprocess` (ui.ask_tab).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from gradio.data_classes import ImageData


@dataclass(frozen=True)
class Upload:
    source: str | bytes  # Gradio's copy in its upload folder (never shown to the user), or a data URL's bytes
    name: str  # the file's name on the user's machine, for messages


def uploaded_image(payload: Any) -> Upload | None:
    """The image input's raw payload (an ImageData dict, or None) as an Upload; None when no image was given."""
    if not payload:
        return None
    data = ImageData.model_validate(payload)
    if data.path is not None:
        return Upload(data.path, data.orig_name or "the uploaded file")
    if data.url and data.url.startswith("data:") and "," in data.url:
        # An API client may send the image inline; its bytes are checked like a file's.
        try:
            return Upload(base64.b64decode(data.url.split(",", 1)[1], validate=True), "the sent image")
        except (binascii.Error, ValueError):
            return Upload(b"", "the sent image (not valid base64)")
    return None
