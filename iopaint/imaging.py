"""Decoding request images and masks, and encoding results, with client errors as ApiError."""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from iopaint.errors import ApiError

# Formats answered in kind; any other input format (BMP, GIF, TIFF, ...) is answered as PNG.
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_PIL_TO_EXT = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp"}
_DATA_URL = re.compile(r"^data:[^,]*,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
MASK_THRESHOLD = 127


@dataclass
class RequestImage:
    """An input image split into what the models work on (RGB) and what is carried over."""

    rgb: np.ndarray  # HxWx3 uint8
    alpha: np.ndarray | None  # HxW uint8, kept unchanged
    grayscale: bool  # answer in L / LA, as it came
    ext: str  # png | jpeg | webp
    icc_profile: bytes | None

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


def decode_base64(text: str, field: str) -> bytes:
    """Base64 (optionally a data: URL) to bytes; tolerant of whitespace and missing padding."""
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, f"empty {field}", f"'{field}' is empty; send the image as base64")
    payload = _WHITESPACE.sub("", _DATA_URL.sub("", text.strip(), count=1))
    payload += "=" * (-len(payload) % 4)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"invalid base64 in {field}", f"'{field}' is not valid base64: {exc}") from None
    if not data:
        raise ApiError(400, f"empty {field}", f"'{field}' decodes to no bytes")
    return data


def open_image(data: bytes, field: str, max_pixels: int) -> tuple[Image.Image, str]:
    """Open and fully decode image bytes, refusing non-images and images over the pixel limit.

    Returns the image and its file format (a transposed copy no longer carries it)."""
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ApiError(
            400, f"{field} is not an image", f"'{field}' is not a PNG, JPEG, WebP or other image Pillow can read"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ApiError(413, f"{field} too large", str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ApiError(400, f"{field} is not an image", f"'{field}' could not be opened: {exc}") from None
    # The header tells the size, so an oversized image is refused before it is decoded.
    width, height = img.size
    if width * height > max_pixels:
        raise ApiError(
            413,
            f"{field} too large",
            f"'{field}' is {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
            "(IOPAINT_MAX_PIXELS / --max-pixels)",
        )
    if width == 0 or height == 0:
        raise ApiError(400, f"{field} is empty", f"'{field}' has no pixels")
    fmt = img.format or ""
    try:
        img.load()
        # Browsers show photos upright by their EXIF orientation, and masks are drawn on that.
        img = ImageOps.exif_transpose(img)
    except Image.DecompressionBombError as exc:
        raise ApiError(413, f"{field} too large", str(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ApiError(400, f"{field} is corrupt", f"'{field}' could not be decoded: {exc}") from None
    return img, fmt


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info
    )


def to_request_image(img: Image.Image, fmt: str) -> RequestImage:
    ext = _PIL_TO_EXT.get(fmt, "png")
    grayscale = img.mode in ("1", "L", "LA", "La", "I", "I;16", "F")
    alpha = None
    if _has_alpha(img):
        rgba = np.asarray(img.convert("RGBA"))
        rgb, alpha = np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    elif grayscale and img.mode not in ("1", "L"):
        # 16-bit and float greyscale: scale to 8 bits instead of clipping.
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max() or 1.0
        gray = np.clip(arr * (255.0 / max(peak, 255.0)), 0, 255).astype(np.uint8)
        rgb = np.repeat(gray[..., None], 3, axis=2)
    else:
        rgb = np.asarray(img.convert("RGB"))
    return RequestImage(
        rgb=np.ascontiguousarray(rgb),
        alpha=alpha,
        grayscale=grayscale,
        ext=ext,
        icc_profile=img.info.get("icc_profile"),
    )


def decode_request_image(text: str, max_pixels: int) -> RequestImage:
    return to_request_image(*open_image(decode_base64(text, "image"), "image", max_pixels))


def decode_mask(text: str, max_pixels: int) -> np.ndarray:
    """The mask as HxW bool: True where the pixel value is above 127.

    A mask with transparency counts a pixel as masked only where it is also opaque, so both
    white-on-black and white-on-transparent masks work.
    """
    img, _ = open_image(decode_base64(text, "mask"), "mask", max_pixels)
    if _has_alpha(img):
        la = np.asarray(img.convert("LA"))
        value = np.minimum(la[..., 0], la[..., 1])
    else:
        value = np.asarray(img.convert("L"))
    return value > MASK_THRESHOLD


def encode_result(rgb: np.ndarray, source: RequestImage) -> tuple[bytes, str]:
    """Encode the result like the input (format, alpha, greyscale); returns (bytes, media type)."""
    if source.grayscale:
        img = Image.fromarray(rgb, "RGB").convert("L")
        if source.alpha is not None:
            img = Image.merge("LA", (img, Image.fromarray(source.alpha, "L")))
    elif source.alpha is not None:
        img = Image.fromarray(np.dstack([rgb, source.alpha]), "RGBA")
    else:
        img = Image.fromarray(rgb, "RGB")

    ext = source.ext
    if ext == "jpeg" and img.mode not in ("RGB", "L"):
        ext = "png"  # JPEG cannot carry alpha
    extra = {"icc_profile": source.icc_profile} if source.icc_profile else {}
    buf = io.BytesIO()
    if ext == "jpeg":
        img.save(buf, "JPEG", quality=95, **extra)
    elif ext == "webp":
        # Lossless, so the pixels outside the mask come back exactly as sent.
        img.save(buf, "WEBP", lossless=True, quality=30, method=2, **extra)
    else:
        img.save(buf, "PNG", compress_level=3, **extra)
    return buf.getvalue(), ext


def check_uploaded_image(data: bytes, max_pixels: int) -> str:
    """Validate an uploaded file as an image without decoding it fully; returns its extension."""
    if not data:
        raise ApiError(400, "empty file", "the uploaded file is empty")
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        fmt = img.format or ""
        img.verify()
    except UnidentifiedImageError:
        raise ApiError(400, "file is not an image", "the uploaded file is not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise ApiError(413, "file too large", str(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ApiError(400, "file is corrupt", f"the uploaded image could not be read: {exc}") from None
    if width * height > max_pixels:
        raise ApiError(
            413,
            "file too large",
            f"the uploaded image is {width}x{height} pixels; the limit is {max_pixels}",
        )
    return {"PNG": "png", "JPEG": "jpg", "MPO": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}.get(
        fmt, "png"
    )
