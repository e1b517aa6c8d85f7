"""A small inpainting server with IOPaint's public HTTP API shape."""

__version__ = "0.1.0"
