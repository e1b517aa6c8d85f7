"""POST /api/v1/inpaint with the cv2 model: results, formats, output persistence, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from .conftest import b64, decode, encode, make_image, make_mask


def inpaint(client, image: bytes, mask: bytes, **extra):
    return client.post("/api/v1/inpaint", json={"image": b64(image), "mask": b64(mask), **extra})


def assert_json_error(resp, status: int, *words: str):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert isinstance(body["error"], str) and body["error"]
    assert "detail" in body
    text = f"{body['error']} {body['detail']}".lower()
    for word in words:
        assert word.lower() in text, body
    return body


@pytest.mark.parametrize("flag", ["INPAINT_NS", "INPAINT_TELEA"])
def test_masked_pixels_change_and_unmasked_stay_equal(client, flag):
    image, mask = make_image(), make_mask()
    resp = inpaint(client, encode(image), encode(mask), cv2_flag=flag, cv2_radius=5)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    out = decode(resp.content)
    masked = mask > 127
    assert out.shape == image.shape
    assert np.array_equal(out[~masked], image[~masked])
    changed = np.any(out[masked] != image[masked], axis=-1).mean()
    assert changed > 0.9
    # Filled from the surroundings: the smooth gradient continues into the hole.
    assert np.abs(out[masked].astype(int) - image[masked].astype(int)).mean() < 40


def test_ns_and_telea_differ(client):
    image, mask = encode(make_image()), encode(make_mask())
    ns = decode(inpaint(client, image, mask, cv2_flag="INPAINT_NS").content)
    telea = decode(inpaint(client, image, mask, cv2_flag="INPAINT_TELEA").content)
    assert not np.array_equal(ns, telea)


def test_data_url_prefix_and_whitespace_accepted(client):
    image, mask = make_image(), make_mask()
    body = {
        "image": b64(encode(image), data_url="image/png"),
        "mask": "data:image/png;base64,\n" + b64(encode(mask)).rstrip("="),  # no padding, a newline
    }
    resp = client.post("/api/v1/inpaint", json=body)
    assert resp.status_code == 200, resp.text
    assert np.array_equal(decode(resp.content)[mask == 0], image[mask == 0])


def test_mask_thresholded_at_127(client):
    image = make_image()
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[10:30, 10:40] = 127  # not masked: not above 127
    mask[35:55, 50:80] = 128  # masked
    out = decode(inpaint(client, encode(image), encode(mask)).content)
    assert np.array_equal(out[mask <= 127], image[mask <= 127])
    assert np.any(out[mask == 128] != image[mask == 128])


def test_rgba_mask_uses_opaque_white_only(client):
    image = make_image()
    rgba = np.zeros(image.shape[:2] + (4,), np.uint8)
    rgba[..., :3] = 255  # white everywhere, but transparent outside the stroke
    rgba[20:40, 30:60, 3] = 255
    out = decode(inpaint(client, encode(image), encode(rgba, mode="RGBA")).content)
    stroke = rgba[..., 3] == 255
    assert np.array_equal(out[~stroke], image[~stroke])
    assert np.any(out[stroke] != image[stroke])


def test_empty_mask_returns_the_image_unchanged(client):
    image = make_image()
    resp = inpaint(client, encode(image), encode(np.zeros(image.shape[:2], np.uint8)))
    assert np.array_equal(decode(resp.content), image)


def test_alpha_channel_is_kept(client):
    image = make_image(channels=4)
    mask = make_mask()
    resp = inpaint(client, encode(image, mode="RGBA"), encode(mask))
    assert resp.headers["content-type"] == "image/png"
    out = decode(resp.content)
    assert out.shape == image.shape
    assert np.array_equal(out[..., 3], image[..., 3])
    assert np.array_equal(out[mask == 0], image[mask == 0])


def test_greyscale_stays_greyscale(client):
    image = make_image()[..., 0]
    out = Image.open(io.BytesIO(inpaint(client, encode(image, mode="L"), encode(make_mask())).content))
    assert out.mode == "L"
    assert np.array_equal(np.asarray(out)[make_mask() == 0], image[make_mask() == 0])


def test_jpeg_answered_as_jpeg(client):
    resp = inpaint(client, encode(make_image(), "JPEG", quality=90), encode(make_mask()))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(resp.content)).format == "JPEG"


def test_webp_answered_as_lossless_webp(client):
    image, mask = make_image(), make_mask()
    resp = inpaint(client, encode(image, "WEBP", lossless=True), encode(mask))
    assert resp.headers["content-type"] == "image/webp"
    out = decode(resp.content)
    assert np.array_equal(out[mask == 0], image[mask == 0])


def test_other_formats_answered_as_png(client):
    resp = inpaint(client, encode(make_image(), "BMP"), encode(make_mask()))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "image/png"


def test_unknown_fields_are_ignored(client):
    resp = inpaint(
        client,
        encode(make_image()),
        encode(make_mask()),
        sd_seed=42,
        hd_strategy="Crop",
        prompt="a cat",
        nested={"x": [1, 2]},
    )
    assert resp.status_code == 200, resp.text


# ---------------------------------------------------------------- output persistence


def test_results_are_written_to_the_output_dir(make_client, tmp_path):
    out_dir = tmp_path / "outputs"
    client = make_client(output_dir=out_dir)
    assert client.get("/api/v1/server-config").json()["enableAutoSaving"] is True
    image, mask = encode(make_image()), encode(make_mask())
    first = inpaint(client, image, mask)
    second = inpaint(client, image, mask)
    files = sorted(out_dir.iterdir())
    assert len(files) == 2, files  # unique names: the second did not overwrite the first
    assert {f.name for f in files} == {first.headers["x-output-file"], second.headers["x-output-file"]}
    assert (out_dir / first.headers["x-output-file"]).read_bytes() == first.content
    assert all(f.suffix == ".png" for f in files)

    jpeg = inpaint(client, encode(make_image(), "JPEG"), mask)
    assert (out_dir / jpeg.headers["x-output-file"]).suffix == ".jpeg"


def test_no_output_dir_writes_nothing(client, tmp_path):
    resp = inpaint(client, encode(make_image()), encode(make_mask()))
    assert resp.status_code == 200
    assert "x-output-file" not in resp.headers
    assert client.get("/api/v1/server-config").json()["enableAutoSaving"] is False


def test_unwritable_output_dir_still_answers(make_client, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    client = make_client(output_dir=blocker / "sub")
    resp = inpaint(client, encode(make_image()), encode(make_mask()))
    assert resp.status_code == 200
    assert "x-output-file" not in resp.headers


# ---------------------------------------------------------------- bad input


def test_corrupt_base64(client):
    resp = client.post("/api/v1/inpaint", json={"image": "@@not base64!!", "mask": b64(encode(make_mask()))})
    assert_json_error(resp, 400, "base64", "image")


def test_base64_of_something_that_is_not_an_image(client):
    resp = client.post(
        "/api/v1/inpaint", json={"image": b64(b"hello, I am text" * 10), "mask": b64(encode(make_mask()))}
    )
    assert_json_error(resp, 400, "not an image")


def test_mask_not_an_image(client):
    resp = client.post("/api/v1/inpaint", json={"image": b64(encode(make_image())), "mask": b64(b"\x00" * 64)})
    assert_json_error(resp, 400, "mask")


def test_truncated_image(client):
    data = encode(make_image(200, 200))
    resp = client.post(
        "/api/v1/inpaint", json={"image": b64(data[: len(data) // 2]), "mask": b64(encode(make_mask(200, 200)))}
    )
    assert_json_error(resp, 400, "image")


def test_empty_strings(client):
    resp = client.post("/api/v1/inpaint", json={"image": "", "mask": ""})
    assert_json_error(resp, 400, "empty")


def test_mask_size_mismatch(client):
    resp = inpaint(client, encode(make_image(96, 64)), encode(make_mask(64, 64, box=(1, 1, 9, 9))))
    assert_json_error(resp, 400, "mask", "64x64", "96x64")


def test_image_over_pixel_limit_is_413(make_client):
    client = make_client(max_pixels=50 * 50)
    resp = inpaint(client, encode(make_image(60, 50)), encode(make_mask(60, 50)))
    assert_json_error(resp, 413, "3000", "2500")
    ok = inpaint(client, encode(make_image(50, 50)), encode(make_mask(50, 50)))
    assert ok.status_code == 200


def test_mask_over_pixel_limit_is_413(make_client):
    client = make_client(max_pixels=50 * 50)
    resp = inpaint(client, encode(make_image(50, 50)), encode(make_mask(80, 80)))
    assert_json_error(resp, 413, "mask")


def test_body_over_size_limit_is_413(make_client):
    client = make_client(max_body_bytes=10_000)
    resp = inpaint(client, encode(make_image(200, 200)), encode(make_mask(200, 200)))
    assert_json_error(resp, 413, "10000")

    # Without a Content-Length (chunked), the limit applies while reading.
    def chunks():
        yield b'{"image": "'
        for _ in range(20):
            yield b"A" * 1000
        yield b'", "mask": ""}'

    resp = client.post("/api/v1/inpaint", content=chunks(), headers={"content-type": "application/json"})
    assert_json_error(resp, 413)


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"{", b"null", b"[]", b'"text"', b"{}", b'{"image": "x"}'],
    ids=["empty", "blank", "broken-json", "null", "list", "string", "no-fields", "no-mask"],
)
def test_malformed_bodies_are_422_json(client, body):
    resp = client.post("/api/v1/inpaint", content=body, headers={"content-type": "application/json"})
    body_json = assert_json_error(resp, 422)
    assert body_json["detail"]


@pytest.mark.parametrize(
    "fields, word",
    [
        ({"image": 1, "mask": 2}, "image"),
        ({"image": ["a"], "mask": "b"}, "image"),
        ({"cv2_flag": "INPAINT_FAST"}, "cv2_flag"),
        ({"cv2_radius": "wide"}, "cv2_radius"),
        ({"cv2_radius": 0}, "cv2_radius"),
        ({"cv2_radius": 1000}, "cv2_radius"),
    ],
)
def test_wrong_types_are_422_json_with_the_field_named(client, fields, word):
    body = {"image": b64(encode(make_image())), "mask": b64(encode(make_mask()))}
    body.update(fields)
    resp = client.post("/api/v1/inpaint", json=body)
    assert_json_error(resp, 422, word)
    assert "AAAA" not in resp.text  # the base64 input is not echoed back


def test_no_content_type_header(client):
    resp = client.post("/api/v1/inpaint", content=b"plain text")
    assert resp.status_code in (400, 422)
    assert resp.json()["error"]


def test_server_keeps_serving_after_bad_requests(client):
    for body in [b"", b"{", b'{"image": 5}']:
        client.post("/api/v1/inpaint", content=body, headers={"content-type": "application/json"})
    resp = inpaint(client, encode(make_image()), encode(make_mask()))
    assert resp.status_code == 200


def test_unknown_route_and_method_are_json(client):
    assert_json_error(client.get("/api/v1/nope"), 404, "/api/v1/nope")
    assert_json_error(client.get("/api/v1/inpaint"), 405)


def test_unexpected_errors_are_json_500_and_the_server_goes_on(make_client, monkeypatch):
    from fastapi.testclient import TestClient

    from iopaint import imaging

    client = make_client()
    client = TestClient(client.app, raise_server_exceptions=False)

    def boom(*args, **kwargs):
        raise RuntimeError("simulated bug")

    with monkeypatch.context() as patch:
        patch.setattr(imaging, "encode_result", boom)
        resp = inpaint(client, encode(make_image()), encode(make_mask()))
        assert_json_error(resp, 500, "simulated bug")
    assert client.get("/api/v1/server-config").status_code == 200
