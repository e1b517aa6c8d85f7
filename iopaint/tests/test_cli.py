"""The command line: settings resolution (flag > env > default), `start` in a real process, and
`healthcheck`."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from iopaint import cli
from iopaint.config import (
    DEFAULT_LAMA_MD5,
    DEFAULT_LAMA_URL,
    DEFAULT_MAX_PIXELS,
    PACKAGE_DIR,
    ConfigError,
    resolve_settings,
)

from .conftest import free_port, server_env


def flags(*argv: str) -> dict:
    return vars(cli.build_parser().parse_args(["start", *argv]))


# ---------------------------------------------------------------- settings resolution


def test_defaults(tmp_path):
    s = resolve_settings(flags(), env={"XDG_CACHE_HOME": str(tmp_path)})
    assert (s.host, s.port, s.model, s.device) == ("127.0.0.1", 8080, "lama", "cpu")
    assert s.model_dir == tmp_path
    assert s.lama_path == tmp_path / "torch" / "hub" / "checkpoints" / "big-lama.pt"
    assert s.output_dir is None
    assert s.max_pixels == DEFAULT_MAX_PIXELS
    assert s.web_dir == PACKAGE_DIR / "web_app"
    assert (s.lama_url, s.lama_md5) == (DEFAULT_LAMA_URL, DEFAULT_LAMA_MD5)
    assert s.disable_model_switch is False


def test_default_model_dir_without_xdg():
    assert resolve_settings(flags(), env={}).model_dir == Path.home() / ".cache"


ENV = {
    "HOST": "0.0.0.0",
    "PORT": "9000",
    "MODEL": "cv2",
    "DEVICE": "cuda",
    "IOPAINT_MODEL_DIR": "/env/models",
    "IOPAINT_OUTPUT_DIR": "/env/out",
    "IOPAINT_MAX_PIXELS": "1000",
}


def test_environment_used_when_no_flags():
    s = resolve_settings(flags(), env=ENV)
    assert (s.host, s.port, s.model, s.device) == ("0.0.0.0", 9000, "cv2", "cuda")
    assert s.model_dir == Path("/env/models")
    assert s.output_dir == Path("/env/out")
    assert s.max_pixels == 1000


def test_flags_beat_environment():
    s = resolve_settings(
        flags(
            "--host",
            "127.0.0.2",
            "--port",
            "9001",
            "--model",
            "lama",
            "--device",
            "cpu",
            "--model-dir",
            "/flag/models",
            "--output-dir",
            "/flag/out",
            "--max-pixels",
            "2000",
        ),
        env=ENV,
    )
    assert (s.host, s.port, s.model, s.device) == ("127.0.0.2", 9001, "lama", "cpu")
    assert s.model_dir == Path("/flag/models")
    assert s.output_dir == Path("/flag/out")
    assert s.max_pixels == 2000


def test_each_flag_beats_its_variable_alone():
    s = resolve_settings(flags("--port", "9100"), env=ENV)
    assert s.port == 9100 and s.host == "0.0.0.0" and s.model == "cv2"


def test_empty_environment_values_mean_unset():
    s = resolve_settings(flags(), env={"PORT": "", "MODEL": " ", "IOPAINT_OUTPUT_DIR": ""})
    assert s.port == 8080 and s.model == "lama" and s.output_dir is None


def test_lama_url_and_md5_from_environment():
    s = resolve_settings(flags(), env={"LAMA_MODEL_URL": "http://127.0.0.1:1/x.pt", "LAMA_MODEL_MD5": "ABC"})
    assert (s.lama_url, s.lama_md5) == ("http://127.0.0.1:1/x.pt", "abc")
    off = resolve_settings(flags(), env={"LAMA_MODEL_URL": ""})
    assert off.lama_url == ""


@pytest.mark.parametrize(
    "env, words",
    [
        ({"PORT": "eighty"}, ["port", "eighty"]),
        ({"PORT": "70000"}, ["port", "65535"]),
        ({"DEVICE": "tpu"}, ["device", "tpu"]),
        ({"IOPAINT_MAX_PIXELS": "0"}, ["pixel", "0"]),
        ({"IOPAINT_MAX_PIXELS": "lots"}, ["pixel"]),
    ],
)
def test_bad_values_are_config_errors(env, words):
    with pytest.raises(ConfigError) as err:
        resolve_settings(flags(), env=env)
    for word in words:
        assert word in str(err.value)


def test_cuda_without_gpu_falls_back_to_cpu_with_a_warning(caplog):
    from iopaint.models import resolve_device

    with caplog.at_level(logging.WARNING, logger="iopaint"):
        assert resolve_device("cuda") == "cpu"  # no GPU on the test machines
    assert any("using CPU" in r.getMessage() for r in caplog.records)
    assert resolve_device("cpu") == "cpu"


# ---------------------------------------------------------------- healthcheck


def test_health_url_defaults_and_forms():
    assert cli.health_url(None, env={}) == "http://127.0.0.1:8080/api/v1/server-config"
    assert cli.health_url(None, env={"HOST": "0.0.0.0", "PORT": "9000"}) == "http://127.0.0.1:9000/api/v1/server-config"
    assert cli.health_url(None, env={"HOST": "10.1.2.3"}) == "http://10.1.2.3:8080/api/v1/server-config"
    assert cli.health_url(None, env={"HOST": "::1"}) == "http://[::1]:8080/api/v1/server-config"
    assert cli.health_url("http://h:1") == "http://h:1/api/v1/server-config"
    assert cli.health_url("h:1/") == "http://h:1/api/v1/server-config"
    assert cli.health_url("http://h:1/custom") == "http://h:1/custom"


def run_cli(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "iopaint", *args],
        env=env or server_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_healthcheck_fails_when_nothing_listens():
    port = free_port()
    result = run_cli("healthcheck", "--url", f"http://127.0.0.1:{port}", "--timeout", "2")
    assert result.returncode == 1
    assert "unhealthy" in result.stderr


def test_healthcheck_fails_on_non_200(tmp_path):
    import functools
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_cli("healthcheck", "--url", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert "404" in result.stderr


# ---------------------------------------------------------------- start, as a real process


def test_start_env_versus_flags_and_healthcheck(start_server, tmp_path):
    """PORT/MODEL/IOPAINT_OUTPUT_DIR from the environment, --port from a flag: the flag wins for
    the port, the environment gives the rest; healthcheck finds the server through PORT."""
    env_port, flag_port = free_port(), free_port()
    out_dir = tmp_path / "env-outputs"
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>ui</title>")
    env = server_env(
        PORT=str(env_port),
        MODEL="cv2",
        DEVICE="cuda",
        IOPAINT_OUTPUT_DIR=str(out_dir),
        IOPAINT_MODEL_DIR=str(tmp_path / "models"),
        IOPAINT_WEB_DIR=str(web),
        HOST="127.0.0.1",
    )
    server = start_server(["--port", str(flag_port)], env)
    config = server.wait_ready(flag_port)
    assert config["model"] == "cv2"
    assert config["device"] == "cpu"  # cuda asked for, none here
    assert config["enableAutoSaving"] is True
    assert out_dir.is_dir()  # created at start
    log = server.output()
    assert "using CPU" in log

    from .conftest import http_get

    status, body = http_get(f"http://127.0.0.1:{flag_port}/")
    assert status == 200 and b"<title>ui</title>" in body

    # healthcheck: the flag URL is up; the default URL (from PORT) is the env port, which is not.
    up = run_cli("healthcheck", "--url", f"http://127.0.0.1:{flag_port}")
    assert up.returncode == 0, up.stderr
    assert "healthy" in up.stdout
    down = run_cli("healthcheck", "--timeout", "2", env=server_env(PORT=str(env_port)))
    assert down.returncode == 1
    by_env = run_cli("healthcheck", env=server_env(PORT=str(flag_port), HOST="0.0.0.0"))
    assert by_env.returncode == 0, by_env.stderr


def test_start_flag_model_beats_env_model_and_missing_ui_warns(start_server, tmp_path):
    port = free_port()
    env = server_env(
        MODEL="lama",
        PORT=str(port),
        IOPAINT_MODEL_DIR=str(tmp_path / "models"),
        IOPAINT_WEB_DIR=str(tmp_path / "no-ui"),
    )
    server = start_server(["--model", "cv2"], env)
    config = server.wait_ready(port)
    assert config["model"] == "cv2"
    assert "no web UI" in server.output()
    import urllib.error

    from .conftest import http_get

    with pytest.raises(urllib.error.HTTPError) as err:
        http_get(f"http://127.0.0.1:{port}/")
    assert err.value.code == 404
    assert b"web UI not found" in err.value.read()


def test_start_with_unavailable_lama_is_one_line_and_exit_2(tmp_path):
    # No weights and downloads off (LAMA_MODEL_URL=""), or no torch at all: unavailable either way.
    result = run_cli("start", "--model", "lama", "--model-dir", str(tmp_path / "empty"), "--port", str(free_port()))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("iopaint: error: model 'lama' is unavailable")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, env, words",
    [
        (["--model", "sd15"], {}, ["unknown model", "sd15"]),
        ([], {"PORT": "http"}, ["port"]),
        ([], {"DEVICE": "tpu"}, ["device"]),
    ],
)
def test_start_config_errors_are_one_line_and_exit_2(args, env, words):
    result = run_cli("start", *args, env=server_env(MODEL="cv2", **env))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr


def test_no_command_prints_help_and_exits_2():
    result = run_cli()
    assert result.returncode == 2
    assert "start" in result.stderr and "healthcheck" in result.stderr


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and "0.1.0" in result.stdout


def test_bench_runs_and_prints_json():
    import json

    result = subprocess.run(
        [sys.executable, "-m", "iopaint.bench", "--runs", "1", "--size", "64", "--json"],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["startup_to_first_200_s"] > 0
    assert report["cv2_inpaint_http_median_ms"] > 0
    assert abs(report["mask_fraction"] - 0.10) < 0.02
