"""The real lama loading, download and inference code, run on a tiny TorchScript model that
has big-lama.pt's signature, forward(image, mask), built here; downloads come from a local
http.server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading

import numpy as np
import pytest

from .conftest import b64, decode, encode, make_image, make_mask

FILL = (0.2, 0.6, 1.0)  # what the tiny model paints: RGB 51, 153, 255
FILL_U8 = np.array([51, 153, 255], np.uint8)


@pytest.fixture
def tiny_lama(torch, tmp_path_factory):
    """A TorchScript file that checks LaMa's input contract and fills the mask with FILL."""

    class TinyLama(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("fill", torch.tensor(FILL).view(1, 3, 1, 1))

        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
                raise ValueError("image must be 1x3xHxW")
            if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2:] != image.shape[2:]:
                raise ValueError("mask must be 1x1xHxW")
            if image.shape[2] % 8 != 0 or image.shape[3] % 8 != 0:
                raise ValueError("sides must be multiples of 8")
            if image.dtype != torch.float32 or float(image.min()) < 0.0 or float(image.max()) > 1.0:
                raise ValueError("image must be float in [0, 1]")
            if not bool(((mask == 0) | (mask == 1)).all()):
                raise ValueError("mask must be binary")
            return image * (1.0 - mask) + self.fill * mask

    path = tmp_path_factory.mktemp("tiny-lama") / "big-lama.pt"
    torch.jit.script(TinyLama()).save(str(path))
    return path


@pytest.fixture
def broken_lama(torch, tmp_path_factory):
    """Right signature, wrong output: a quarter of the image."""

    class Broken(torch.nn.Module):
        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return image[:, :, : image.shape[2] // 2, : image.shape[3] // 2]

    path = tmp_path_factory.mktemp("broken-lama") / "big-lama.pt"
    torch.jit.script(Broken()).save(str(path))
    return path


def install(weights, model_dir):
    dest = model_dir / "torch" / "hub" / "checkpoints" / "big-lama.pt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, dest)
    return dest


def md5_of(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def file_server(tmp_path):
    """An http.server on 127.0.0.1 serving tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def inpaint(client, image, mask):
    return client.post("/api/v1/inpaint", json={"image": b64(encode(image)), "mask": b64(encode(mask))})


# ---------------------------------------------------------------- model code directly


@pytest.mark.parametrize("size", [(64, 48), (53, 37), (1, 1), (9, 17)])
def test_inference_pads_crops_and_keeps_unmasked_pixels(tiny_lama, make_settings, size):
    from iopaint.models import InpaintOptions, ModelManager

    width, height = size
    settings = make_settings(model="lama", model_dir=tiny_lama.parent.parent / "unused")
    install(tiny_lama, settings.model_dir)
    manager = ModelManager.start(settings)
    image = make_image(width, height)
    mask = np.zeros((height, width), bool)
    mask[height // 3 : height // 3 + max(1, height // 2), width // 4 : width // 4 + max(1, width // 2)] = True
    out = manager.inpaint(image, mask, InpaintOptions())
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], image[~mask])
    assert (out[mask] == FILL_U8).all()
    manager.close()


# ---------------------------------------------------------------- through the API


def test_lama_serves_inpaint_requests(tiny_lama, make_client, tmp_path):
    install(tiny_lama, tmp_path / "models")
    client = make_client(model="lama")
    config = client.get("/api/v1/server-config").json()
    assert config["model"] == "lama"
    assert config["modelInfos"][1]["available"] is True
    image, mask = make_image(70, 45), make_mask(70, 45, box=(10, 5, 40, 30))
    resp = inpaint(client, image, mask)
    assert resp.status_code == 200, resp.text
    out = decode(resp.content)
    assert np.array_equal(out[mask == 0], image[mask == 0])
    assert (out[mask > 0] == FILL_U8).all()


def test_switch_cv2_to_lama_and_back(tiny_lama, client, tmp_path):
    install(tiny_lama, tmp_path / "models")
    image, mask = make_image(), make_mask()
    resp = client.post("/api/v1/model", json={"name": "lama"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "lama"
    assert client.get("/api/v1/model").json()["name"] == "lama"
    assert (decode(inpaint(client, image, mask).content)[mask > 0] == FILL_U8).all()
    assert client.post("/api/v1/model", json={"name": "cv2"}).status_code == 200
    assert not (decode(inpaint(client, image, mask).content)[mask > 0] == FILL_U8).all()


def test_weights_placed_after_start_become_available(tiny_lama, client, tmp_path):
    before = client.get("/api/v1/models").json()[1]
    assert before["available"] is False
    assert client.post("/api/v1/model", json={"name": "lama"}).status_code == 409
    install(tiny_lama, tmp_path / "models")
    after = client.get("/api/v1/models").json()[1]
    assert after["available"] is True and after["reason"] == ""
    assert client.post("/api/v1/model", json={"name": "lama"}).status_code == 200


def test_corrupt_weights_are_409_and_cv2_keeps_serving(tiny_lama, client, tmp_path):
    dest = install(tiny_lama, tmp_path / "models")
    dest.write_bytes(b"this is not a TorchScript archive")
    resp = client.post("/api/v1/model", json={"name": "lama"})
    assert resp.status_code == 409
    assert "could not be loaded" in resp.json()["detail"]
    info = client.get("/api/v1/models").json()[1]
    assert info["available"] is False and "could not be loaded" in info["reason"]
    assert client.get("/api/v1/model").json()["name"] == "cv2"
    assert inpaint(client, make_image(), make_mask()).status_code == 200
    # Replacing the file clears the remembered failure.
    install(tiny_lama, tmp_path / "models")
    assert client.get("/api/v1/models").json()[1]["available"] is True
    assert client.post("/api/v1/model", json={"name": "lama"}).status_code == 200


def test_model_with_wrong_output_gives_json_error_and_server_goes_on(broken_lama, make_client, tmp_path):
    install(broken_lama, tmp_path / "models")
    client = make_client(model="lama")
    resp = inpaint(client, make_image(), make_mask())
    assert resp.status_code == 500
    assert resp.json()["error"] == "inpainting failed"
    assert client.post("/api/v1/model", json={"name": "cv2"}).status_code == 200
    assert inpaint(client, make_image(), make_mask()).status_code == 200


# ---------------------------------------------------------------- download with MD5 check


def test_download_with_good_md5(tiny_lama, file_server, make_client, tmp_path):
    served, base = file_server
    shutil.copyfile(tiny_lama, served / "big-lama.pt")
    client = make_client(lama_url=f"{base}/big-lama.pt", lama_md5=md5_of(tiny_lama))
    listed = client.get("/api/v1/models").json()[1]
    assert listed["available"] is True and "not downloaded yet" in listed["reason"]
    resp = client.post("/api/v1/model", json={"name": "lama"})
    assert resp.status_code == 200, resp.text
    dest = tmp_path / "models" / "torch" / "hub" / "checkpoints" / "big-lama.pt"
    assert dest.read_bytes() == tiny_lama.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["big-lama.pt"]
    image, mask = make_image(), make_mask()
    assert (decode(inpaint(client, image, mask).content)[mask > 0] == FILL_U8).all()


def test_download_with_bad_md5_is_refused(tiny_lama, file_server, make_client, tmp_path):
    served, base = file_server
    shutil.copyfile(tiny_lama, served / "big-lama.pt")
    client = make_client(lama_url=f"{base}/big-lama.pt", lama_md5="0" * 32)
    resp = client.post("/api/v1/model", json={"name": "lama"})
    assert resp.status_code == 409
    assert "MD5" in resp.json()["detail"] and "0" * 32 in resp.json()["detail"]
    checkpoints = tmp_path / "models" / "torch" / "hub" / "checkpoints"
    assert not checkpoints.exists() or not list(checkpoints.iterdir())  # nothing half-written left
    info = client.get("/api/v1/models").json()[1]
    assert info["available"] is False and "MD5" in info["reason"]
    assert client.get("/api/v1/model").json()["name"] == "cv2"


def test_download_not_found_is_409(file_server, make_client, torch):
    _, base = file_server
    client = make_client(lama_url=f"{base}/missing.pt")
    resp = client.post("/api/v1/model", json={"name": "lama"})
    assert resp.status_code == 409
    assert "404" in resp.json()["detail"]


def test_download_without_md5_skips_the_check(tiny_lama, file_server, make_client):
    served, base = file_server
    shutil.copyfile(tiny_lama, served / "big-lama.pt")
    client = make_client(lama_url=f"{base}/big-lama.pt", lama_md5="")
    assert client.post("/api/v1/model", json={"name": "lama"}).status_code == 200


def test_start_with_lama_downloads_at_start(tiny_lama, file_server, make_client):
    served, base = file_server
    shutil.copyfile(tiny_lama, served / "big-lama.pt")
    client = make_client(model="lama", lama_url=f"{base}/big-lama.pt", lama_md5=md5_of(tiny_lama))
    assert client.get("/api/v1/model").json()["name"] == "lama"


# ---------------------------------------------------------------- real server process


def test_cli_start_with_lama(tiny_lama, start_server, tmp_path):
    from .conftest import free_port, server_env

    install(tiny_lama, tmp_path / "models")
    port = free_port()
    server = start_server(
        ["--model", "lama", "--port", str(port), "--model-dir", str(tmp_path / "models")], server_env()
    )
    config = server.wait_ready(port)
    assert config["model"] == "lama" and config["device"] == "cpu"
