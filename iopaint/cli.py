"""Command line: `python -m iopaint start ...` and `python -m iopaint healthcheck [--url URL]`.

Heavy modules (numpy, OpenCV, FastAPI, torch) are imported only by `start`, so the Docker
health check, which runs every few seconds, stays cheap.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from iopaint import __version__
from iopaint.config import (
    DEFAULT_DEVICE,
    DEFAULT_HOST,
    DEFAULT_MODEL,
    DEFAULT_PORT,
    DEVICES,
    ConfigError,
    resolve_settings,
)

HEALTH_PATH = "/api/v1/server-config"
log = logging.getLogger("iopaint")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m iopaint", description="A small inpainting server.")
    parser.add_argument("--version", action="version", version=f"iopaint {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # Flag defaults are None so that "not given" can fall back to the environment.
    start = sub.add_parser(
        "start",
        help="run the server",
        description="Run the server. Each flag falls back to the environment "
        "variable named in its help, then to the default.",
    )
    start.add_argument("--host", help=f"address to listen on (env HOST, default {DEFAULT_HOST})")
    start.add_argument("--port", type=int, help=f"port to listen on (env PORT, default {DEFAULT_PORT})")
    start.add_argument("--model", help=f"model to serve: cv2 or lama (env MODEL, default {DEFAULT_MODEL})")
    start.add_argument(
        "--device",
        choices=DEVICES,
        help=f"cpu or cuda; cuda without a GPU falls back to CPU (env DEVICE, default {DEFAULT_DEVICE})",
    )
    start.add_argument(
        "--model-dir",
        help="where models are cached: <dir>/torch/hub/checkpoints/big-lama.pt "
        "(env IOPAINT_MODEL_DIR, default $XDG_CACHE_HOME or ~/.cache)",
    )
    start.add_argument("--output-dir", help="save every result here (env IOPAINT_OUTPUT_DIR, default: none)")
    start.add_argument(
        "--max-pixels",
        type=int,
        help="largest image accepted, in pixels; larger gets 413 (env IOPAINT_MAX_PIXELS, default 4096*4096)",
    )
    start.add_argument(
        "--disable-model-switch", action="store_true", default=None, help="refuse POST /api/v1/model to another model"
    )

    health = sub.add_parser("healthcheck", help="exit 0 when the server answers GET /api/v1/server-config with 200")
    health.add_argument(
        "--url", help="server base URL or full URL (default http://127.0.0.1:$PORT, or $HOST when it is not a wildcard)"
    )
    health.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    return parser


def fail(message: str, code: int = 2) -> int:
    print(f"iopaint: error: {message}", file=sys.stderr)
    return code


def cmd_start(args: argparse.Namespace) -> int:
    try:
        settings = resolve_settings(vars(args))
    except ConfigError as exc:
        return fail(str(exc))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from iopaint.models import ModelManager, ModelUnavailable, UnknownModel

    if settings.output_dir is not None:
        try:
            settings.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return fail(f"cannot create the output dir {settings.output_dir}: {exc}")

    try:
        manager = ModelManager.start(settings)
    except UnknownModel as exc:
        return fail(str(exc))
    except ModelUnavailable as exc:
        return fail(f"model {settings.model!r} is unavailable: {exc}")

    import uvicorn

    from iopaint.api import create_app

    app = create_app(settings, manager)
    log.info(
        "iopaint %s: model %s on %s, model dir %s, output dir %s, listening on http://%s:%d",
        __version__,
        manager.current,
        manager.device,
        settings.model_dir,
        settings.output_dir or "(none)",
        _url_host(settings.host),
        settings.port,
    )
    # log_config=None: uvicorn's loggers go through the root handler set up above.
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def default_health_url(env=None) -> str:
    env = os.environ if env is None else env
    host = (env.get("HOST") or "").strip()
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"  # a wildcard listener answers on loopback
    port = (env.get("PORT") or "").strip() or str(DEFAULT_PORT)
    return f"http://{_url_host(host)}:{port}{HEALTH_PATH}"


def health_url(url: str | None, env=None) -> str:
    if not url:
        return default_health_url(env)
    if "://" not in url:
        url = f"http://{url}"
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path=HEALTH_PATH)
    return urllib.parse.urlunsplit(parts)


def cmd_healthcheck(args: argparse.Namespace) -> int:
    url = health_url(args.url)
    # Never through a proxy: the server is local to the container or host.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=args.timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {getattr(exc, 'reason', None) or exc}", file=sys.stderr)
        return 1
    if status == 200:
        print(f"healthy: {url}")
        return 0
    print(f"unhealthy: {url} answered {status}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "start":
        return cmd_start(args)
    if args.command == "healthcheck":
        return cmd_healthcheck(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
