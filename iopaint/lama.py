"""The `lama` model: a TorchScript `big-lama.pt`, loaded from the model dir or downloaded.

torch is imported only when the model is loaded, so the server runs (with cv2) without it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from iopaint.config import Settings

log = logging.getLogger("iopaint.lama")

DOWNLOAD_TIMEOUT_S = 30
_CHUNK = 1 << 20


class LamaUnavailable(Exception):
    """Why the lama model cannot be used right now (shown to the user as the reason)."""


def torch_missing_reason() -> str | None:
    """None when torch can be imported, else a sentence saying so (cheap: does not import it)."""
    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        found = False
    return None if found else "torch is not installed (install the 'torch' extra: pip install 'iopaint[torch]')"


def import_torch():
    try:
        return importlib.import_module("torch")
    except Exception as exc:  # a broken install raises more than ImportError (OSError for .so files)
        raise LamaUnavailable(f"torch cannot be imported: {exc}") from None


def download(url: str, dest: Path, md5: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch url into dest, checking the MD5 when one is given; dest appears only when it is good."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
        got = digest.hexdigest()
        if md5 and got != md5:
            raise LamaUnavailable(f"download from {url} has MD5 {got}, expected {md5} (LAMA_MODEL_MD5)")
        os.replace(part, dest)
    except LamaUnavailable:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # HTTPError's text has the status code; URLError's reason is the socket error.
        reason = exc if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", None) or exc
        raise LamaUnavailable(f"download from {url} failed: {reason}") from None
    finally:
        part.unlink(missing_ok=True)


def _file_key(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


class LamaSpec:
    """Availability and loading of lama. Remembers failures, but re-checks the file every time,
    so a file copied into the model dir after start is picked up on the next list or switch."""

    name = "lama"

    def __init__(self, settings: Settings):
        self.settings = settings
        self._download_error: str | None = None
        self._load_error: tuple[tuple, str] | None = None  # (file key, message)

    @property
    def path(self) -> Path:
        return self.settings.lama_path

    def status(self) -> tuple[bool, str]:
        missing = torch_missing_reason()
        if missing:
            return False, missing
        key = _file_key(self.path)
        if key is not None:
            if self._load_error and self._load_error[0] == key:
                return False, self._load_error[1]
            return True, ""
        if not self.settings.lama_url:
            return False, f"{self.path} is missing and downloading is off (LAMA_MODEL_URL is empty)"
        if self._download_error:
            return False, f"{self.path} is missing and {self._download_error}"
        return True, f"not downloaded yet; fetched from {self.settings.lama_url} when first used"

    def ensure_file(self) -> Path:
        if self.path.is_file():
            return self.path
        url = self.settings.lama_url
        if not url:
            raise LamaUnavailable(f"{self.path} is missing and downloading is off (LAMA_MODEL_URL is empty)")
        log.info("downloading %s from %s", self.path.name, url)
        try:
            download(url, self.path, self.settings.lama_md5)
        except LamaUnavailable as exc:
            self._download_error = str(exc)
            raise LamaUnavailable(f"{self.path} is missing and {exc}") from None
        self._download_error = None
        log.info("saved %s", self.path)
        return self.path

    def load(self, device: str) -> LamaModel:
        missing = torch_missing_reason()
        if missing:
            raise LamaUnavailable(missing)
        path = self.ensure_file()  # before importing torch: a missing file fails fast
        torch = import_torch()
        key = _file_key(path)
        try:
            module = torch.jit.load(str(path), map_location=device)
            module.eval()
        except Exception as exc:  # torch raises RuntimeError, ValueError, ... for bad files
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            message = f"{path} could not be loaded as TorchScript: {first_line}"
            self._load_error = (key, message)
            raise LamaUnavailable(message) from None
        self._load_error = None
        log.info("loaded %s on %s", path, device)
        return LamaModel(torch, module, device)


class LamaModel:
    name = "lama"

    def __init__(self, torch, module, device: str):
        self._torch = torch
        self._module = module
        self._device = device

    def inpaint(self, rgb: np.ndarray, mask: np.ndarray, options) -> np.ndarray:
        torch = self._torch
        height, width = mask.shape
        pad = ((0, -height % 8), (0, -width % 8))
        # LaMa needs sides that are multiples of 8; mirror the edge so the padding looks natural.
        image = np.pad(rgb, pad + ((0, 0),), mode="symmetric")
        mask_f = np.pad(mask.astype(np.float32), pad, mode="symmetric")

        with torch.inference_mode():
            image_t = torch.from_numpy(np.ascontiguousarray(image)).to(self._device)
            image_t = image_t.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
            mask_t = torch.from_numpy(np.ascontiguousarray(mask_f)).to(self._device)[None, None]
            out = self._module(image_t, mask_t)
            if (
                not isinstance(out, torch.Tensor)
                or out.dim() != 4
                or tuple(out.shape[:2]) != (1, 3)
                or out.shape[2] < height
                or out.shape[3] < width
            ):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise RuntimeError(f"lama returned {shape}, expected (1, 3, {image.shape[0]}, {image.shape[1]})")
            out = out[0, :, :height, :width].float().clamp(0.0, 1.0).mul(255.0).round()
            return out.to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()

    def close(self) -> None:
        self._module = None
        if self._device == "cuda":
            self._torch.cuda.empty_cache()
