"""server-config, model listing and switching, save_image, and the web UI at `/`."""

from __future__ import annotations

import numpy as np
import pytest

from iopaint import __version__, lama

from .conftest import b64, decode, encode, make_image, make_mask


@pytest.fixture
def no_torch(monkeypatch):
    """Behave as if torch were not installed, whatever this environment has."""
    monkeypatch.setattr(lama, "torch_missing_reason", lambda: "torch is not installed (simulated)")
    import iopaint.models

    monkeypatch.setattr(iopaint.models, "torch_missing_reason", lambda: "torch is not installed (simulated)")


def test_server_config_shape(client):
    config = client.get("/api/v1/server-config").json()
    assert config["version"] == __version__
    assert config["model"] == "cv2"
    assert config["device"] == "cpu"
    assert config["enableAutoSaving"] is False
    assert config["disableModelSwitch"] is False
    names = [m["name"] for m in config["modelInfos"]]
    assert names == ["cv2", "lama"]
    for info in config["modelInfos"]:
        assert set(info) >= {"name", "path", "model_type", "available", "reason"}
        assert info["model_type"] == "inpaint"
    cv2_info = config["modelInfos"][0]
    assert cv2_info["available"] is True and cv2_info["reason"] == ""


def test_models_and_current_model(client):
    models = client.get("/api/v1/models").json()
    assert [m["name"] for m in models] == ["cv2", "lama"]
    current = client.get("/api/v1/model").json()
    assert current["name"] == "cv2" and current["available"] is True


def test_lama_listed_unavailable_without_weights_and_downloads_off(client, tmp_path):
    lama_info = client.get("/api/v1/models").json()[1]
    assert lama_info["available"] is False
    assert lama_info["reason"]  # either torch is missing or the file is
    assert lama_info["path"].endswith("torch/hub/checkpoints/big-lama.pt")


def test_lama_reason_from_the_real_environment(client):
    import importlib.util

    info = client.get("/api/v1/models").json()[1]
    if importlib.util.find_spec("torch") is None:
        assert "torch is not installed" in info["reason"]
    else:
        assert "LAMA_MODEL_URL is empty" in info["reason"]


def test_openapi_schema_is_served(client):
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/inpaint" in schema["paths"]


def test_lama_listed_unavailable_without_torch(client, no_torch, tmp_path):
    weights = tmp_path / "models" / "torch" / "hub" / "checkpoints" / "big-lama.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"present, but torch is not")
    info = client.get("/api/v1/models").json()[1]
    assert info["available"] is False
    assert "torch is not installed" in info["reason"]


def test_switch_to_unknown_model_is_404_and_cv2_keeps_serving(client):
    resp = client.post("/api/v1/model", json={"name": "sd15"})
    assert resp.status_code == 404
    assert "sd15" in resp.json()["detail"]
    assert client.get("/api/v1/model").json()["name"] == "cv2"
    assert (
        client.post(
            "/api/v1/inpaint", json={"image": b64(encode(make_image())), "mask": b64(encode(make_mask()))}
        ).status_code
        == 200
    )


def test_switch_to_unavailable_lama_is_409_with_reason(client, no_torch):
    resp = client.post("/api/v1/model", json={"name": "lama"})
    assert resp.status_code == 409
    body = resp.json()
    assert body["error"] == "model unavailable"
    assert "torch is not installed" in body["detail"]
    assert client.get("/api/v1/model").json()["name"] == "cv2"
    assert client.get("/api/v1/server-config").json()["model"] == "cv2"
    resp = client.post("/api/v1/inpaint", json={"image": b64(encode(make_image())), "mask": b64(encode(make_mask()))})
    assert resp.status_code == 200


def test_switch_without_weights_and_downloads_off_is_409(client):
    resp = client.post("/api/v1/model", json={"name": "lama"})
    assert resp.status_code == 409
    assert client.get("/api/v1/model").json()["name"] == "cv2"


def test_switch_to_the_current_model_is_a_no_op(client):
    resp = client.post("/api/v1/model", json={"name": "cv2"})
    assert resp.status_code == 200
    assert resp.json()["name"] == "cv2"


@pytest.mark.parametrize("body", [{}, {"name": 3}, {"model": "cv2"}])
def test_switch_with_bad_body_is_422(client, body):
    resp = client.post("/api/v1/model", json=body)
    assert resp.status_code == 422
    assert "name" in resp.json()["detail"]


def test_disable_model_switch(make_client):
    client = make_client(disable_model_switch=True)
    assert client.get("/api/v1/server-config").json()["disableModelSwitch"] is True
    resp = client.post("/api/v1/model", json={"name": "lama"})
    assert resp.status_code == 403
    assert resp.json()["error"]
    assert client.post("/api/v1/model", json={"name": "cv2"}).status_code == 200


def test_cv2_start_never_needs_torch(make_client, no_torch):
    client = make_client(model="cv2")
    assert client.get("/api/v1/server-config").json()["model"] == "cv2"


def test_creating_an_app_for_unavailable_lama_raises(make_settings, no_torch):
    from iopaint.api import create_app
    from iopaint.models import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="torch is not installed"):
        create_app(make_settings(model="lama"))


# ---------------------------------------------------------------- save_image


def test_save_image_without_output_dir_is_400(client):
    resp = client.post("/api/v1/save_image", files={"file": ("a.png", encode(make_image()), "image/png")})
    assert resp.status_code == 400
    assert "output" in resp.json()["detail"]


def test_save_image_writes_the_file(make_client, tmp_path):
    out_dir = tmp_path / "outputs"
    client = make_client(output_dir=out_dir)
    data = encode(make_image())
    resp = client.post("/api/v1/save_image", files={"file": ("result.png", data, "image/png")})
    assert resp.status_code == 200, resp.text
    assert resp.json()["filename"] == "result.png"
    assert (out_dir / "result.png").read_bytes() == data
    # The same name again does not overwrite.
    again = client.post("/api/v1/save_image", files={"file": ("result.png", data, "image/png")})
    assert again.json()["filename"] == "result-1.png"
    assert (out_dir / "result-1.png").read_bytes() == data


def test_save_image_sanitises_the_name(make_client, tmp_path):
    out_dir = tmp_path / "outputs"
    client = make_client(output_dir=out_dir)
    resp = client.post(
        "/api/v1/save_image", files={"file": ("../../etc/evil name", encode(make_image(), "JPEG"), "image/jpeg")}
    )
    assert resp.status_code == 200, resp.text
    name = resp.json()["filename"]
    assert "/" not in name and name.endswith(".jpg")
    assert (out_dir / name).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]


@pytest.mark.parametrize("payload, status", [(b"not an image", 400), (b"", 400)])
def test_save_image_refuses_non_images(make_client, tmp_path, payload, status):
    client = make_client(output_dir=tmp_path / "outputs")
    resp = client.post("/api/v1/save_image", files={"file": ("x.png", payload, "image/png")})
    assert resp.status_code == status
    assert resp.json()["error"]
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").iterdir())


def test_save_image_over_pixel_limit_is_413(make_client, tmp_path):
    client = make_client(output_dir=tmp_path / "outputs", max_pixels=100)
    resp = client.post("/api/v1/save_image", files={"file": ("x.png", encode(make_image()), "image/png")})
    assert resp.status_code == 413


def test_save_image_without_file_field_is_422(make_client, tmp_path):
    client = make_client(output_dir=tmp_path / "outputs")
    resp = client.post("/api/v1/save_image", data={"other": "x"})
    assert resp.status_code == 422
    assert "file" in resp.json()["detail"]


# ---------------------------------------------------------------- web UI


def test_web_ui_served_from_web_dir(make_client, tmp_path):
    web = tmp_path / "web"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>iopaint test ui</title>")
    (web / "assets" / "app.js").write_text("console.log('hi')")
    client = make_client(web_dir=web)
    index = client.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert "iopaint test ui" in index.text
    asset = client.get("/assets/app.js")
    assert asset.status_code == 200 and "console.log" in asset.text
    # The API still wins over the static mount, and unknown files are JSON 404s.
    assert client.get("/api/v1/server-config").status_code == 200
    missing = client.get("/assets/nope.js")
    assert missing.status_code == 404 and missing.json()["error"]


def test_missing_web_ui_is_a_json_404_and_a_warning(make_client, caplog):
    with caplog.at_level("WARNING"):
        client = make_client()
    resp = client.get("/")
    assert resp.status_code == 404
    assert resp.json()["error"] == "web UI not found"
    assert any("no web UI" in record.getMessage() for record in caplog.records)
    assert client.get("/api/v1/server-config").status_code == 200


def test_web_dir_from_env(monkeypatch, tmp_path):
    from iopaint.config import resolve_settings

    monkeypatch.setenv("IOPAINT_WEB_DIR", str(tmp_path))
    assert resolve_settings({}).web_dir == tmp_path


def test_inpaint_result_round_trip_through_save_image(make_client, tmp_path):
    out_dir = tmp_path / "outputs"
    client = make_client(output_dir=out_dir)
    result = client.post("/api/v1/inpaint", json={"image": b64(encode(make_image())), "mask": b64(encode(make_mask()))})
    saved = client.post("/api/v1/save_image", files={"file": ("edited.png", result.content, "image/png")})
    assert saved.status_code == 200
    assert np.array_equal(decode((out_dir / "edited.png").read_bytes()), decode(result.content))
