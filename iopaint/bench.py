"""Benchmark: server start-up time and cv2 inpaint latency.

    python -m iopaint.bench [--runs 15] [--size 1024] [--json]

1. Starts `python -m iopaint start --model cv2` on a free loopback port and times the spawn
   until the first 200 from GET /api/v1/server-config.
2. Sends POST /api/v1/inpaint with a SIZExSIZE PNG and a mask covering 10% of it, RUNS times
   (after one warm-up), and reports the median end-to-end latency; also the median of the
   model step alone (cv2.inpaint in this process) for comparison.
Only 127.0.0.1 is contacted. This is a measurement, not a test: it never fails on a slow number.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_image(size: int, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth gradients plus noise (compresses like a real photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([np.sin(x * 6) * 0.5 + 0.5, np.cos(y * 4) * 0.5 + 0.5, (x + y) / 2], axis=-1) * 220
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def bench_mask(size: int, fraction: float = 0.10) -> np.ndarray:
    """A centred square covering `fraction` of the image, like one large brush region."""
    side = int(round(size * fraction**0.5))
    start = (size - side) // 2
    mask = np.zeros((size, size), np.uint8)
    mask[start : start + side, start : start + side] = 255
    return mask


def png_b64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import cv2

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }


def start_server(port: int, workdir: str) -> tuple[subprocess.Popen, float]:
    env = dict(os.environ, LAMA_MODEL_URL="", IOPAINT_MODEL_DIR=workdir, IOPAINT_WEB_DIR=workdir)
    env.pop("IOPAINT_OUTPUT_DIR", None)
    url = f"http://127.0.0.1:{port}/api/v1/server-config"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "iopaint", "start", "--model", "cv2", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = t0 + 60
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: the server exited with {proc.returncode} before answering")
        try:
            with _NO_PROXY.open(url, timeout=1) as resp:
                if resp.status == 200:
                    return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.01)
    proc.kill()
    raise SystemExit("bench: the server did not answer within 60 s")


def post_inpaint(port: int, body: bytes) -> float:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/inpaint", data=body, headers={"Content-Type": "application/json"}
    )
    t0 = time.perf_counter()
    with _NO_PROXY.open(req, timeout=120) as resp:
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"bench: inpaint answered {resp.status}")
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iopaint.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed inpaint requests (default 15)")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels (default 1024)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.size < 8:
        parser.error("--runs must be >= 1 and --size >= 8")

    from iopaint.cv2_model import Cv2Model
    from iopaint.models import InpaintOptions

    image, mask = bench_image(args.size), bench_mask(args.size)
    body = json.dumps({"image": png_b64(image), "mask": png_b64(mask)}).encode()

    with tempfile.TemporaryDirectory(prefix="iopaint-bench-") as workdir:
        port = free_port()
        proc, startup = start_server(port, workdir)
        try:
            post_inpaint(port, body)  # warm-up
            http_times = [post_inpaint(port, body) for _ in range(args.runs)]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    model, options, bool_mask = Cv2Model(), InpaintOptions(), mask > 127
    model.inpaint(image, bool_mask, options)
    model_times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        model.inpaint(image, bool_mask, options)
        model_times.append(time.perf_counter() - t0)

    result = {
        "machine": machine(),
        "startup_to_first_200_s": round(startup, 3),
        "image": f"{args.size}x{args.size} PNG",
        "mask_fraction": round(float(bool_mask.mean()), 4),
        "runs": args.runs,
        "cv2_inpaint_http_median_ms": round(statistics.median(http_times) * 1000, 1),
        "cv2_inpaint_http_min_ms": round(min(http_times) * 1000, 1),
        "cv2_inpaint_http_max_ms": round(max(http_times) * 1000, 1),
        "cv2_model_only_median_ms": round(statistics.median(model_times) * 1000, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        m = result["machine"]
        print(
            f"machine: {m['cpu']}, {m['cores']} cores, {m['os']}, Python {m['python']}, "
            f"numpy {m['numpy']}, OpenCV {m['opencv']}"
        )
        print(f"server start -> first 200 from /api/v1/server-config: {result['startup_to_first_200_s']:.3f} s")
        print(
            f"cv2 inpaint, {result['image']}, {result['mask_fraction']:.0%} mask, median of {args.runs}: "
            f"{result['cv2_inpaint_http_median_ms']:.1f} ms end to end over HTTP "
            f"(min {result['cv2_inpaint_http_min_ms']:.1f}, max {result['cv2_inpaint_http_max_ms']:.1f}); "
            f"{result['cv2_model_only_median_ms']:.1f} ms in cv2.inpaint alone"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
