"""The `cv2` model: OpenCV's classic inpainting (Navier-Stokes or Telea). No weights."""

from __future__ import annotations

import cv2
import numpy as np

FLAGS = {"INPAINT_NS": cv2.INPAINT_NS, "INPAINT_TELEA": cv2.INPAINT_TELEA}


class Cv2Model:
    name = "cv2"

    def inpaint(self, rgb: np.ndarray, mask: np.ndarray, options) -> np.ndarray:
        mask_u8 = mask.astype(np.uint8) * 255
        return cv2.inpaint(rgb, mask_u8, float(options.cv2_radius), FLAGS[options.cv2_flag])

    def close(self) -> None:
        pass
