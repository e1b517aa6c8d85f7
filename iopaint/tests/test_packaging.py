"""Packaging: pinned dependencies, what the wheel ships, the pyproject-only build, a light CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PACKAGE = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((PACKAGE / "pyproject.toml").read_text())


def test_dependencies_are_pinned():
    deps = PYPROJECT["project"]["dependencies"]
    names = {dep.split("==")[0] for dep in deps}
    assert names == {"fastapi", "uvicorn", "opencv-python-headless", "numpy", "pillow", "python-multipart", "pydantic"}
    assert all("==" in dep for dep in deps), deps
    assert "numpy==1.26.4" in deps  # torch 2.1.2 needs numpy 1.x
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert extras["torch"] == ["torch==2.1.2"]
    assert all("==" in dep for dep in extras["test"])
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"


def test_tests_are_not_a_shipped_package():
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"iopaint": "."}
    assert not any("tests" in pkg for pkg in setuptools["packages"])


def build_wheel(source: Path, out: Path) -> Path:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list(out.glob("iopaint-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_ships_the_code_and_web_ui_but_not_the_tests(tmp_path):
    src = tmp_path / "iopaint"
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "web_app"))
    (src / "web_app" / "assets").mkdir(parents=True)
    (src / "web_app" / "index.html").write_text("<!doctype html>")
    (src / "web_app" / "assets" / "index-abc.js").write_text("1")
    names = set(zipfile.ZipFile(build_wheel(src, tmp_path / "dist")).namelist())
    for module in ("__init__", "__main__", "cli", "api", "config", "models", "lama", "cv2_model", "imaging", "errors"):
        assert f"iopaint/{module}.py" in names
    assert "iopaint/web_app/index.html" in names
    assert "iopaint/web_app/assets/index-abc.js" in names
    assert not any("tests" in name for name in names), sorted(names)


def test_pyproject_alone_builds(tmp_path):
    """The Docker builder installs the dependencies from the pyproject before the code is copied."""
    src = tmp_path / "stub"
    src.mkdir()
    shutil.copy(PACKAGE / "pyproject.toml", src)
    wheel = build_wheel(src, tmp_path / "dist")
    metadata = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Requires-Dist: numpy==1.26.4" in text
    assert 'Requires-Dist: torch==2.1.2; extra == "torch"' in text


def test_healthcheck_path_imports_nothing_heavy():
    code = (
        "import sys; import iopaint.cli; "
        "print(sorted(m for m in ('numpy', 'cv2', 'fastapi', 'torch', 'PIL', 'uvicorn') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.parametrize("module", ["iopaint.api", "iopaint.models", "iopaint.lama"])
def test_server_modules_do_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stdout + result.stderr
