"""The HTTP API (IOPaint's `/api/v1` shape) and the static web UI at `/`."""

from __future__ import annotations

import logging
import re
import time
import uuid
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from iopaint import __version__, imaging
from iopaint.config import Settings
from iopaint.errors import ApiError
from iopaint.models import InpaintFailed, InpaintOptions, ModelManager, ModelUnavailable, UnknownModel

log = logging.getLogger("iopaint.api")


class InpaintRequest(BaseModel):
    # Unknown fields (IOPaint's frontend sends many: sd_seed, hd_strategy, ...) are ignored.
    model_config = ConfigDict(extra="ignore")

    image: str = Field(description="the image, base64, optionally as a data: URL")
    mask: str = Field(description="the mask, same size; pixels above 127 are inpainted")
    cv2_flag: Literal["INPAINT_NS", "INPAINT_TELEA"] = "INPAINT_NS"
    cv2_radius: int = Field(4, ge=1, le=100)


class SwitchModelRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"the request body is over the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Refuses bodies over a size with 413, by Content-Length or while streaming (chunked)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    too_large = int(value) > self.limit
                except ValueError:
                    too_large = False
                if too_large:
                    response = _error_response(413, "request too large", BodyTooLarge(self.limit).detail)
                    await response(scope, receive, send)
                    return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited_receive, send)


def _error_response(status: int, error: str, detail) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def _describe_validation_errors(errors) -> tuple[str, list[dict]]:
    messages, items = [], []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        kind = err.get("type", "")
        where = (
            ".".join(str(part) for part in loc[1:] if part != "body")
            if loc[:1] == ("body",)
            else ".".join(map(str, loc))
        )
        if kind == "missing" and loc == ("body",):
            msg = "the request body is empty; expected a JSON object"
        elif kind == "json_invalid":
            msg = f"the request body is not valid JSON: {err.get('ctx', {}).get('error', 'decode error')}"
        else:
            msg = f"{where}: {err.get('msg', kind)}" if where else err.get("msg", kind)
        messages.append(msg)
        # No "input" echo: it can be megabytes of base64.
        items.append({"loc": list(loc), "msg": err.get("msg", ""), "type": kind})
    return "; ".join(messages), items


def _safe_filename(name: str | None, ext: str) -> str:
    stem = Path(name or "").name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")
    if not stem:
        stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    if "." not in stem:
        stem = f"{stem}.{ext}"
    return stem[:200]


def _write_new_file(directory: Path, filename: str, data: bytes) -> Path:
    """Write data under a name not yet taken (name, name-1, name-2, ...); never overwrites."""
    directory.mkdir(parents=True, exist_ok=True)
    base, dot, ext = filename.rpartition(".")
    if not dot:
        base, ext = filename, ""
    candidate, n = directory / filename, 0
    while True:
        try:
            out = open(candidate, "xb")  # exclusive create: two requests never share a name
            break
        except FileExistsError:
            n += 1
            candidate = directory / f"{base}-{n}{dot}{ext}"
    try:
        with out:
            out.write(data)
    except BaseException:
        candidate.unlink(missing_ok=True)
        raise
    return candidate


def web_ui_dir(settings: Settings) -> Path | None:
    web = settings.web_dir
    return web if (web / "index.html").is_file() else None


def create_app(settings: Settings, manager: ModelManager | None = None) -> FastAPI:
    """The app; with no manager, one serving settings.model is made (raises if unavailable)."""
    manager = manager or ModelManager.start(settings)
    # No Swagger page: it loads its scripts from a CDN. The schema itself is served.
    app = FastAPI(
        title="iopaint", version=__version__, docs_url=None, redoc_url=None, openapi_url="/api/v1/openapi.json"
    )
    app.state.settings = settings
    app.state.manager = manager
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError):
        return _error_response(exc.status, exc.error, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError):
        detail, items = _describe_validation_errors(exc.errors())
        return JSONResponse({"error": "invalid request", "detail": detail, "errors": items}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException):
        error = {404: "not found", 405: "method not allowed", 413: "request too large"}.get(
            exc.status_code, "bad request" if exc.status_code < 500 else "server error"
        )
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"nothing at {request.method} {request.url.path}"
        return JSONResponse(
            {"error": error, "detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception):
        # Last resort: the server keeps running and the client still gets JSON.
        log.error("unhandled error on %s %s: %r", request.method, request.url.path, exc)
        return _error_response(500, "internal error", f"{type(exc).__name__}: {exc}")

    def config_json() -> dict:
        return {
            "version": __version__,
            "model": manager.current,
            "device": manager.device,
            "modelInfos": [info.to_json() for info in manager.infos()],
            "enableAutoSaving": settings.output_dir is not None,
            "disableModelSwitch": settings.disable_model_switch,
            "maxPixels": settings.max_pixels,
            # IOPaint fields this server has no use for, kept so its clients find them.
            "plugins": [],
            "enableFileManager": False,
            "enableControlnet": False,
            "isDesktop": False,
            "samplers": [],
        }

    @app.get("/api/v1/server-config")
    def server_config():
        return config_json()

    @app.get("/api/v1/models")
    def list_models():
        return [info.to_json() for info in manager.infos()]

    @app.get("/api/v1/model")
    def current_model():
        return manager.info(manager.current).to_json()

    @app.post("/api/v1/model")
    def switch_model(req: SwitchModelRequest):
        if req.name not in manager.names:
            raise ApiError(404, "unknown model", f"unknown model {req.name!r}; known: {', '.join(manager.names)}")
        if settings.disable_model_switch and req.name != manager.current:
            raise ApiError(403, "model switching is disabled", "the server was started with --disable-model-switch")
        try:
            info = manager.switch(req.name)
        except UnknownModel as exc:
            raise ApiError(404, "unknown model", str(exc)) from None
        except ModelUnavailable as exc:
            raise ApiError(409, "model unavailable", f"{req.name}: {exc}; still serving {manager.current}") from None
        return info.to_json()

    @app.post("/api/v1/inpaint")
    def inpaint(req: InpaintRequest):
        source = imaging.decode_request_image(req.image, settings.max_pixels)
        mask = imaging.decode_mask(req.mask, settings.max_pixels)
        width, height = source.size
        if mask.shape != (height, width):
            raise ApiError(
                400, "mask size mismatch", f"mask is {mask.shape[1]}x{mask.shape[0]} but image is {width}x{height}"
            )
        options = InpaintOptions(cv2_flag=req.cv2_flag, cv2_radius=req.cv2_radius)
        try:
            result = manager.inpaint(source.rgb, mask, options)
        except InpaintFailed as exc:
            raise ApiError(500, "inpainting failed", str(exc)) from None
        data, ext = imaging.encode_result(result, source)
        headers = {}
        if settings.output_dir is not None:
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.{ext}"
            try:
                saved = _write_new_file(settings.output_dir, name, data)
                headers["X-Output-File"] = saved.name
            except OSError as exc:
                # The user still gets the result; the failure is in the log for the operator.
                log.error("could not save the result in %s: %s", settings.output_dir, exc)
        return Response(content=data, media_type=imaging.MEDIA_TYPES[ext], headers=headers)

    @app.post("/api/v1/save_image")
    def save_image(file: Annotated[UploadFile, File(description="the image to save")]):
        if settings.output_dir is None:
            raise ApiError(
                400, "no output directory", "start the server with --output-dir (or IOPAINT_OUTPUT_DIR) to save images"
            )
        data = file.file.read(settings.max_body_bytes + 1)
        ext = imaging.check_uploaded_image(data, settings.max_pixels)
        try:
            saved = _write_new_file(settings.output_dir, _safe_filename(file.filename, ext), data)
        except OSError as exc:
            raise ApiError(507, "could not save", f"writing into {settings.output_dir} failed: {exc}") from None
        return {"filename": saved.name}

    web = web_ui_dir(settings)
    if web is not None:
        app.mount("/", StaticFiles(directory=web, html=True), name="web")
    else:
        log.warning(
            "no web UI at %s (index.html missing): '/' answers 404; "
            "build web_app and copy dist/ there, or set IOPAINT_WEB_DIR",
            settings.web_dir,
        )

        @app.get("/", include_in_schema=False)
        def no_web_ui():
            raise ApiError(
                404,
                "web UI not found",
                f"no index.html in {settings.web_dir}; build web_app (npm run build) and copy "
                "web_app/dist into iopaint/web_app, or set IOPAINT_WEB_DIR",
            )

    return app
