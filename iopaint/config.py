"""Server settings: command-line flags, then environment variables, then defaults.

Kept free of heavy imports so that `python -m iopaint healthcheck` stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MODEL = "lama"
DEFAULT_DEVICE = "cpu"
DEVICES = ("cpu", "cuda")
DEFAULT_MAX_PIXELS = 4096 * 4096
# A request body larger than this is refused with 413 before it is read into memory. It leaves
# room for a max-size RGBA PNG plus its mask, base64-encoded.
DEFAULT_MAX_BODY_BYTES = 256 * 1024 * 1024
# IOPaint's published LaMa TorchScript file and its checksum (used when the file is missing).
DEFAULT_LAMA_URL = "https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt"
DEFAULT_LAMA_MD5 = "e3aa4aaa15225a33ec84f9f4bc47e500"
PACKAGE_DIR = Path(__file__).resolve().parent


class ConfigError(ValueError):
    """A setting has a value the server cannot use; the message names the flag and variable."""


@dataclass(frozen=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model: str = DEFAULT_MODEL
    device: str = DEFAULT_DEVICE
    model_dir: Path = field(default_factory=lambda: default_model_dir({}))
    output_dir: Path | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    web_dir: Path = PACKAGE_DIR / "web_app"
    lama_url: str = DEFAULT_LAMA_URL
    lama_md5: str = DEFAULT_LAMA_MD5
    disable_model_switch: bool = False

    @property
    def lama_path(self) -> Path:
        # IOPaint's cache layout, so an existing IOPaint model cache can be mounted as is.
        return self.model_dir / "torch" / "hub" / "checkpoints" / "big-lama.pt"


def default_model_dir(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"


def _pick(flag_value, env: Mapping[str, str], name: str):
    """The flag if given, else the environment variable if set and not empty, else None."""
    if flag_value is not None:
        return flag_value
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _positive_int(value, what: str, minimum: int = 1, maximum: int | None = None) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{what} must be a whole number, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{what} must be {bounds}, got {number}")
    return number


def resolve_settings(flags: Mapping[str, object], env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from parsed flags (None = not given) and the environment; a flag wins."""
    env = os.environ if env is None else env

    host = _pick(flags.get("host"), env, "HOST") or DEFAULT_HOST
    port_raw = _pick(flags.get("port"), env, "PORT")
    port = DEFAULT_PORT if port_raw is None else _positive_int(port_raw, "port (--port / PORT)", 1, 65535)
    model = str(_pick(flags.get("model"), env, "MODEL") or DEFAULT_MODEL).strip().lower()
    device = str(_pick(flags.get("device"), env, "DEVICE") or DEFAULT_DEVICE).strip().lower()
    if device not in DEVICES:
        raise ConfigError(f"device (--device / DEVICE) must be one of {', '.join(DEVICES)}, got {device!r}")

    model_dir_raw = _pick(flags.get("model_dir"), env, "IOPAINT_MODEL_DIR")
    model_dir = Path(model_dir_raw).expanduser() if model_dir_raw else default_model_dir(env)
    output_raw = _pick(flags.get("output_dir"), env, "IOPAINT_OUTPUT_DIR")
    output_dir = Path(output_raw).expanduser() if output_raw else None

    pixels_raw = _pick(flags.get("max_pixels"), env, "IOPAINT_MAX_PIXELS")
    max_pixels = (
        DEFAULT_MAX_PIXELS
        if pixels_raw is None
        else _positive_int(pixels_raw, "pixel limit (--max-pixels / IOPAINT_MAX_PIXELS)")
    )
    web_raw = _pick(None, env, "IOPAINT_WEB_DIR")
    web_dir = Path(web_raw).expanduser() if web_raw else PACKAGE_DIR / "web_app"

    # Unset means the default; set but empty means "no download" / "no checksum".
    lama_url = env.get("LAMA_MODEL_URL", DEFAULT_LAMA_URL).strip()
    lama_md5 = env.get("LAMA_MODEL_MD5", DEFAULT_LAMA_MD5).strip().lower()

    return Settings(
        host=str(host),
        port=port,
        model=model,
        device=device,
        model_dir=model_dir,
        output_dir=output_dir,
        max_pixels=max_pixels,
        web_dir=web_dir,
        lama_url=lama_url,
        lama_md5=lama_md5,
        disable_model_switch=bool(flags.get("disable_model_switch")),
    )
