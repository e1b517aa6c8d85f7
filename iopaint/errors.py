"""The one error type the API turns into a JSON answer: {"error": ..., "detail": ...}."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str = ""):
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail

    def body(self) -> dict:
        return {"error": self.error, "detail": self.detail}
