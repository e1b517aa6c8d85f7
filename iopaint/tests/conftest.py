"""Shared fixtures: generated images, app clients, free ports, server subprocesses, torch."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iopaint.config import Settings

# Every env variable the server reads; tests start from a clean slate.
SERVER_ENV = (
    "HOST",
    "PORT",
    "MODEL",
    "DEVICE",
    "IOPAINT_MODEL_DIR",
    "IOPAINT_OUTPUT_DIR",
    "IOPAINT_MAX_PIXELS",
    "IOPAINT_WEB_DIR",
    "LAMA_MODEL_URL",
    "LAMA_MODEL_MD5",
    "XDG_CACHE_HOME",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in SERVER_ENV:
        monkeypatch.delenv(name, raising=False)
    # Test traffic is loopback only, never through a proxy.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def torch():
    """torch, or a skip; with IOPAINT_REQUIRE_TORCH=1 a missing torch is a failure instead."""
    if os.environ.get("IOPAINT_REQUIRE_TORCH") == "1":
        try:
            import torch as torch_module
        except Exception as exc:
            pytest.fail(f"IOPAINT_REQUIRE_TORCH=1 but torch cannot be imported: {exc}")
        return torch_module
    return pytest.importorskip("torch")


# ---------------------------------------------------------------- images


def make_image(width: int = 96, height: int = 64, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth gradient with texture, so inpainting visibly changes the masked area."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), (x + y) % 256], axis=-1)
    noise = rng.integers(0, 40, (height, width, 3))
    rgb = np.clip(base + noise, 0, 255).astype(np.uint8)
    if channels == 4:
        alpha = rng.integers(0, 256, (height, width, 1), dtype=np.uint8)
        return np.concatenate([rgb, alpha], axis=-1)
    return rgb


def make_mask(width: int = 96, height: int = 64, box=(30, 20, 60, 44)) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 255
    return mask


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, fmt, **save)
    return buf.getvalue()


def b64(data: bytes, data_url: str | None = None) -> str:
    text = base64.b64encode(data).decode("ascii")
    return f"data:{data_url};base64,{text}" if data_url else text


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


# ---------------------------------------------------------------- app clients


@pytest.fixture
def make_settings(tmp_path):
    """Settings for tests: empty model dir, no downloads, no UI unless asked."""

    def build(**overrides) -> Settings:
        values = dict(
            model="cv2",
            model_dir=tmp_path / "models",
            web_dir=tmp_path / "no-web-ui",
            lama_url="",
        )
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def make_client(make_settings):
    """A TestClient factory; server-side exceptions are raised, so any 500 fails loudly."""
    from fastapi.testclient import TestClient

    from iopaint.api import create_app

    clients = []

    def build(**overrides):
        client = TestClient(create_app(make_settings(**overrides)))
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client):
    return make_client()


# ---------------------------------------------------------------- real servers


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 2.0):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return resp.status, resp.read()


class ServerProcess:
    def __init__(self, args, env, cwd):
        self.log_path = Path(cwd) / f"server-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iopaint", "start", *args],
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, port: int, timeout: float = 30.0) -> dict:
        import json

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                status, body = http_get(f"http://127.0.0.1:{port}/api/v1/server-config", timeout=1.0)
                if status == 200:
                    return json.loads(body)
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready on port {port} after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def server_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV}
    env.update({"LAMA_MODEL_URL": "", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@pytest.fixture
def start_server(tmp_path):
    servers = []

    def start(args, env) -> ServerProcess:
        server = ServerProcess(args, env, tmp_path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
