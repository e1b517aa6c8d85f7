"""The model registry and the one model that serves requests at a time."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from iopaint.config import Settings
from iopaint.lama import LamaSpec, LamaUnavailable, import_torch, torch_missing_reason

log = logging.getLogger("iopaint.models")


class UnknownModel(Exception):
    pass


class ModelUnavailable(Exception):
    """A known model that cannot be loaded now; the message is the reason."""


class InpaintFailed(Exception):
    pass


@dataclass(frozen=True)
class InpaintOptions:
    cv2_flag: str = "INPAINT_NS"
    cv2_radius: int = 4


class Model(Protocol):
    name: str

    def inpaint(self, rgb: np.ndarray, mask: np.ndarray, options: InpaintOptions) -> np.ndarray: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    available: bool
    reason: str
    model_type: str = "inpaint"

    def to_json(self) -> dict:
        # The first fields are IOPaint's ModelInfo shape; available/reason are ours.
        return {
            "name": self.name,
            "path": self.path,
            "model_type": self.model_type,
            "need_prompt": False,
            "support_strength": False,
            "support_outpainting": False,
            "support_controlnet": False,
            "available": self.available,
            "reason": self.reason,
        }


class Cv2Spec:
    name = "cv2"
    path = "cv2"

    def status(self) -> tuple[bool, str]:
        return True, ""

    def load(self, device: str):
        from iopaint.cv2_model import Cv2Model

        return Cv2Model()


def resolve_device(requested: str) -> str:
    """The device that will really be used: CUDA only when torch sees a GPU, else CPU."""
    if requested != "cuda":
        return "cpu"
    missing = torch_missing_reason()
    if missing:
        log.warning("--device cuda requested but %s; using CPU", missing)
        return "cpu"
    try:
        torch = import_torch()
        if torch.cuda.is_available():
            return "cuda"
        reason = "torch sees no CUDA device"
    except LamaUnavailable as exc:
        reason = str(exc)
    log.warning("--device cuda requested but %s; using CPU", reason)
    return "cpu"


class ModelManager:
    """Holds the current model; switching and inference are serialised by one lock, so a failed
    switch leaves the previous model serving and no request sees a half-loaded model."""

    def __init__(self, settings: Settings, device: str | None = None):
        self.settings = settings
        self.device = device if device is not None else resolve_device(settings.device)
        self._specs = {"cv2": Cv2Spec(), "lama": LamaSpec(settings)}
        self._lock = threading.Lock()
        self._model: Model | None = None
        self._name: str | None = None

    @classmethod
    def start(cls, settings: Settings, device: str | None = None) -> ModelManager:
        """A manager serving settings.model; raises UnknownModel / ModelUnavailable."""
        manager = cls(settings, device)
        manager.switch(settings.model)
        return manager

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    @property
    def current(self) -> str | None:
        return self._name

    def info(self, name: str) -> ModelInfo:
        spec = self._spec(name)
        available, reason = spec.status()
        if name == self._name:
            available, reason = True, ""  # loaded and serving
        return ModelInfo(name=name, path=str(spec.path), available=available, reason=reason)

    def infos(self) -> list[ModelInfo]:
        return [self.info(name) for name in self._specs]

    def _spec(self, name: str):
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownModel(f"unknown model {name!r}; known models: {', '.join(self._specs)}") from None

    def switch(self, name: str) -> ModelInfo:
        spec = self._spec(name)
        with self._lock:
            if name != self._name:
                # Always a fresh attempt: a file copied in, or a network back, since the last
                # failure makes it succeed now.
                try:
                    model = spec.load(self.device)
                except LamaUnavailable as exc:
                    raise ModelUnavailable(str(exc)) from None
                old, self._model, self._name = self._model, model, name
                if old is not None:
                    old.close()
                log.info("model %s is serving on %s", name, self.device)
        return self.info(name)

    def inpaint(self, rgb: np.ndarray, mask: np.ndarray, options: InpaintOptions) -> np.ndarray:
        if not mask.any():
            return rgb.copy()
        with self._lock:
            model, name = self._model, self._name
            if model is None:
                raise InpaintFailed("no model is loaded")
            try:
                result = model.inpaint(rgb, mask, options)
            except Exception as exc:
                log.exception("model %s failed", name)
                raise InpaintFailed(f"model {name} failed: {exc}") from exc
        if not isinstance(result, np.ndarray) or result.shape != rgb.shape or result.dtype != np.uint8:
            raise InpaintFailed(f"model {name} returned an image of the wrong shape or type")
        # Only the masked pixels come from the model; everything else is the input, bit for bit.
        return np.where(mask[..., None], result, rgb)

    def close(self) -> None:
        with self._lock:
            if self._model is not None:
                self._model.close()
            self._model = self._name = None
