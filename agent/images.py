"""Loading user images safely: clear one-line errors, bounded pixel counts, normalised to 8-bit RGB."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

# Larger inputs are refused outright: a decompression bomb must never be decoded. 8000x8000 is far above
# anything the vision tower sees (the processor downsizes to max_pixels anyway).
MAX_IMAGE_PIXELS = 64_000_000


# What any message about a file that is not a usable image suggests instead.
FORMATS_THAT_WORK = "a photo saved as JPEG, PNG, WebP, GIF, BMP or TIFF"


class ImageError(ValueError):
    """An image could not be used; the message is one line and says why and what would work."""


def load_image(
    source: str | Path | bytes | Image.Image, *, max_pixels: int = MAX_IMAGE_PIXELS, name: str | None = None
) -> Image.Image:
    """Open a path, bytes or PIL image as an upright 8-bit RGB image, or raise ImageError.

    Messages name the image by `name` when given (the app gives the uploaded file's own name, never the
    server's copy of it), else by the path given."""
    if name is None:
        name = (
            "image bytes"
            if isinstance(source, bytes)
            else str(source)
            if not isinstance(source, Image.Image)
            else "image"
        )
    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, str | Path):
            path = Path(source)
            if not path.exists():
                raise ImageError(f"{name}: no such file")
            if path.is_dir():
                raise ImageError(f"{name}: is a directory, not an image")
            data = path.read_bytes()
        else:
            data = source
        if not data:
            raise ImageError(f"{name}: empty file (0 bytes); choose {FORMATS_THAT_WORK}")
        try:
            with warnings.catch_warnings():
                # Pillow warns from 89M pixels; our own, lower limit is checked below before any decoding.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
                _check_pixels(image, name, max_pixels)
                image.load()
        except ImageError:
            raise
        except Image.DecompressionBombError:  # over twice Pillow's limit: refused by Pillow before its size is read
            raise ImageError(
                f"{name}: too many pixels (over {2 * (Image.MAX_IMAGE_PIXELS or 0):,}; the limit is {max_pixels:,}). "
                f"{_SMALLER}"
            ) from None
        except UnidentifiedImageError:
            raise ImageError(
                f"{name}: not an image (format not recognised: the content is not a picture, whatever its name "
                f"says); choose {FORMATS_THAT_WORK}"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(
                f"{name}: broken or truncated image ({exc}); save or export it again, or choose another file"
            ) from None
    _check_pixels(image, name, max_pixels)
    return to_rgb(image)


_SMALLER = "Save a smaller copy (e.g. 4000×3000, which keeps every detail the model can see) and use that"


def _check_pixels(image: Image.Image, name: str, max_pixels: int) -> None:
    if image.width <= 0 or image.height <= 0:
        raise ImageError(f"{name}: image has no pixels; choose {FORMATS_THAT_WORK}")
    if image.width * image.height > max_pixels:
        raise ImageError(
            f"{name}: {image.width}×{image.height} is too many pixels ({image.width * image.height:,}; the limit is "
            f"{max_pixels:,}). {_SMALLER}"
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode (CMYK, 16-bit, alpha, palette) to 8-bit RGB."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: scale the actual range into 0-255 instead of clipping to white.
        lo, hi = image.getextrema()
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        image = (
            image.point(lambda v: (v - lo) * scale, "F")
            if image.mode != "F"
            else image.point(lambda v: (v - lo) * scale)
        )
        image = image.convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGB" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image
