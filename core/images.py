"""Image files as PIL reads them: open and check, turn upright by their EXIF orientation, convert to PNG.

Ingestion and `cnnpipe predict` both prepare images here, so training and serving see the same pixels.
TensorFlow's decoders (PNG, JPEG, GIF, BMP) ignore EXIF and read a subset of what PIL reads; this
module imports no TensorFlow, only PIL and numpy.
"""

import contextlib
import io
from typing import Iterator

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

KEPT_FORMATS = ("PNG", "JPEG")  # stored or sent as they are when upright (ingestion also asks TensorFlow)
PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")  # 8-bit modes a PNG stores unchanged, transparency included
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError)  # what PIL raises on damaged data


class ImageReadError(ValueError):
    """PIL cannot read or convert the image; the message says why in words and leaves naming the file to the caller."""


def open_image(data: bytes) -> Image.Image:
    """The image in `data`, opened lazily (its first frame if animated); pixels are decoded when first used."""
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:  # its text names a BytesIO object, not the problem
        raise ImageReadError(
            f"not an image PIL or TensorFlow can read (it starts with bytes {repr(data[:8])[1:]})"
        ) from None
    except _READ_ERRORS as error:
        raise ImageReadError(f"a damaged or cut-short image ({error})") from None


@contextlib.contextmanager
def _decoding(image: Image.Image) -> Iterator[None]:
    """Turns PIL's errors while decoding pixels into an ImageReadError naming the format."""
    try:
        yield
    except _READ_ERRORS as error:
        raise ImageReadError(f"a damaged or cut-short {image.format} image ({error})") from None


def rotation(image: Image.Image) -> int:
    """The image's EXIF orientation (1: upright as stored, 2-8: mirrored and/or rotated)."""
    with _decoding(image):  # a PNG's EXIF may follow its pixels, so reading it can decode them
        return image.getexif().get(ExifTags.Base.Orientation, 1)


def needs_png(image: Image.Image) -> bool:
    """Whether the image must become an upright PNG: it is neither PNG nor JPEG, it is a CMYK or YCCK JPEG
    (which TensorFlow cannot decode to grey), or its EXIF rotates it."""
    cmyk_jpeg = image.format == "JPEG" and image.mode == "CMYK"
    return image.format not in KEPT_FORMATS or cmyk_jpeg or rotation(image) != 1


def upright_png(image: Image.Image) -> bytes:
    """The image (first frame) upright by its EXIF orientation, as a lossless 8-bit PNG.

    16-bit grey is scaled to 8 bits (the high byte, as TensorFlow's PNG decoder does); CMYK, YCbCr
    and other modes become RGB, or RGBA when they have transparency; palette and 8-bit images keep
    their mode and transparency.
    """
    with _decoding(image):
        image = ImageOps.exif_transpose(image)
        if image.mode == "I" or image.mode.startswith("I;16"):
            image = Image.fromarray((np.clip(np.asarray(image, np.int64), 0, 0xFFFF) >> 8).astype(np.uint8), "L")
        elif image.mode not in PNG_MODES:
            image = image.convert("RGBA" if image.has_transparency_data else "RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def upright_bytes(data: bytes) -> bytes:
    """`data` itself when it is an upright PNG or JPEG, else its image as an upright PNG (`upright_png`)."""
    image = open_image(data)
    return upright_png(image) if needs_png(image) else data
