import { describe, expect, it, vi } from "vitest";
import { ApiError, createApi, errorFromResponse, formatDetail } from "./api";
import { blobToDataUrl, bytesToBase64, dataUrlMime } from "./dataurl";

const cv2 = { name: "cv2", path: "cv2", model_type: "inpaint", available: true, reason: null };
const lama = { name: "lama", path: "big-lama.pt", model_type: "inpaint", available: false, reason: "torch is not installed" };

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

/** A fetch mock that answers by "METHOD path" and records the calls. */
function mockFetch(routes: Record<string, () => Response | Promise<Response>>) {
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const key = `${init?.method ?? "GET"} ${String(input)}`;
    const route = routes[key];
    if (!route) return json({ error: "NotFound", detail: key }, 404);
    return route();
  });
  return fn;
}

describe("server config and models", () => {
  it("reads the model list and current model from /server-config", async () => {
    const fetch = mockFetch({
      "GET /api/v1/server-config": () =>
        json({ modelInfos: [cv2, lama], model: "cv2", device: "cpu", enableAutoSaving: false, disableModelSwitch: false, version: "0.1.0" }),
    });
    const state = await createApi(fetch).loadModels();
    expect(state.models.map((m) => m.name)).toEqual(["cv2", "lama"]);
    expect(state.models[1].available).toBe(false);
    expect(state.current).toBe("cv2");
    expect(state.config?.device).toBe("cpu");
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it("accepts a ModelInfo object as the config's current model", async () => {
    const fetch = mockFetch({ "GET /api/v1/server-config": () => json({ modelInfos: [cv2], model: cv2 }) });
    expect((await createApi(fetch).loadModels()).current).toBe("cv2");
  });

  it("falls back to /models and /model when server-config has no list", async () => {
    const fetch = mockFetch({
      "GET /api/v1/server-config": () => json({ error: "Oops", detail: "broken" }, 500),
      "GET /api/v1/models": () => json([cv2, lama]),
      "GET /api/v1/model": () => json(cv2),
    });
    const state = await createApi(fetch).loadModels();
    expect(state.models).toHaveLength(2);
    expect(state.current).toBe("cv2");
    expect(state.config).toBeNull();
  });

  it("reports the server-config error when the fallback fails too", async () => {
    const fetch = mockFetch({ "GET /api/v1/server-config": () => json({ error: "Broken", detail: "config exploded" }, 500) });
    await expect(createApi(fetch).loadModels()).rejects.toMatchObject({ status: 500, code: "Broken", detail: "config exploded" });
  });
});

describe("switchModel", () => {
  it("POSTs the name as JSON and returns the new model", async () => {
    const fetch = mockFetch({ "POST /api/v1/model": () => json(cv2) });
    const info = await createApi(fetch).switchModel("cv2");
    expect(info.name).toBe("cv2");
    const [url, init] = fetch.mock.calls[0];
    expect(url).toBe("/api/v1/model");
    expect(init?.method).toBe("POST");
    expect(new Headers(init?.headers).get("Content-Type")).toBe("application/json");
    expect(JSON.parse(String(init?.body))).toEqual({ name: "cv2" });
  });

  it("turns a 409 {error, detail} into a readable ApiError", async () => {
    const fetch = mockFetch({
      "POST /api/v1/model": () => json({ error: "ModelUnavailable", detail: "lama: torch is not installed" }, 409),
    });
    const err = await createApi(fetch).switchModel("lama").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 409, code: "ModelUnavailable", detail: "lama: torch is not installed" });
    expect((err as Error).message).toBe("ModelUnavailable: lama: torch is not installed");
  });

  it("reports an unknown model's 404", async () => {
    const fetch = mockFetch({ "POST /api/v1/model": () => json({ error: "UnknownModel", detail: "no model named foo" }, 404) });
    await expect(createApi(fetch).switchModel("foo")).rejects.toMatchObject({ status: 404, code: "UnknownModel" });
  });
});

describe("inpaint", () => {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);

  it("sends image and mask as JSON and returns the image bytes", async () => {
    const fetch = mockFetch({
      "POST /api/v1/inpaint": () => new Response(png, { status: 200, headers: { "Content-Type": "image/png", "X-Seed": "1" } }),
    });
    const blob = await createApi(fetch).inpaint({ image: "data:image/png;base64,AAAA", mask: "data:image/png;base64,BBBB" });
    expect(blob.type).toBe("image/png");
    expect(new Uint8Array(await blob.arrayBuffer())).toEqual(png);
    const body = JSON.parse(String(fetch.mock.calls[0][1]?.body));
    expect(body).toEqual({ image: "data:image/png;base64,AAAA", mask: "data:image/png;base64,BBBB" });
  });

  it("passes cv2 options through", async () => {
    const fetch = mockFetch({ "POST /api/v1/inpaint": () => new Response(png, { headers: { "Content-Type": "image/png" } }) });
    await createApi(fetch).inpaint({ image: "i", mask: "m", cv2_flag: "INPAINT_TELEA", cv2_radius: 7 });
    expect(JSON.parse(String(fetch.mock.calls[0][1]?.body))).toMatchObject({ cv2_flag: "INPAINT_TELEA", cv2_radius: 7 });
  });

  it("turns a 400 JSON error into an ApiError", async () => {
    const fetch = mockFetch({
      "POST /api/v1/inpaint": () => json({ error: "BadRequest", detail: "mask size 10x10 does not match image size 20x20" }, 400),
    });
    await expect(createApi(fetch).inpaint({ image: "i", mask: "m" })).rejects.toMatchObject({
      status: 400,
      message: "BadRequest: mask size 10x10 does not match image size 20x20",
    });
  });

  it("turns a network failure into status 0 'Cannot reach the server'", async () => {
    const fetch = vi.fn(async () => {
      throw new TypeError("Failed to fetch");
    });
    const err = await createApi(fetch).inpaint({ image: "i", mask: "m" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 0, code: "Cannot reach the server", detail: "Failed to fetch" });
  });

  it("lets an abort through unchanged", async () => {
    const fetch = vi.fn(async () => {
      throw new DOMException("The operation was aborted.", "AbortError");
    });
    await expect(createApi(fetch).inpaint({ image: "i", mask: "m" })).rejects.toMatchObject({ name: "AbortError" });
  });

  it("rejects a 200 that is not an image", async () => {
    const fetch = mockFetch({ "POST /api/v1/inpaint": () => json({ ok: true }) });
    await expect(createApi(fetch).inpaint({ image: "i", mask: "m" })).rejects.toMatchObject({ code: "Unexpected response" });
  });
});

describe("error bodies", () => {
  it("formats FastAPI validation details", () => {
    expect(
      formatDetail([
        { loc: ["body", "image"], msg: "Field required", type: "missing" },
        { loc: ["body", "mask"], msg: "Field required", type: "missing" },
      ]),
    ).toBe("body.image: Field required; body.mask: Field required");
  });

  it("uses a bare {detail} with the status line", async () => {
    const err = await errorFromResponse(json({ detail: "Not Found" }, 404));
    expect(err.message).toBe("HTTP 404: Not Found");
  });

  it("strips an HTML error page to short text", async () => {
    const err = await errorFromResponse(
      new Response("<html><body><h1>502 Bad Gateway</h1></body></html>", { status: 502, statusText: "Bad Gateway" }),
    );
    expect(err).toMatchObject({ status: 502, code: "HTTP 502 Bad Gateway", detail: "502 Bad Gateway" });
  });

  it("copes with an empty body", async () => {
    const err = await errorFromResponse(new Response(null, { status: 413, statusText: "Payload Too Large" }));
    expect(err.message).toBe("HTTP 413 Payload Too Large");
  });
});

describe("data URLs", () => {
  it("encodes bytes as base64", () => {
    expect(bytesToBase64(new TextEncoder().encode("hello"))).toBe("aGVsbG8=");
  });

  it("encodes large buffers in chunks", () => {
    const big = new Uint8Array(200_000).map((_, i) => i & 0xff);
    const decoded = atob(bytesToBase64(big));
    expect(decoded.length).toBe(big.length);
    expect(Uint8Array.from(decoded, (c) => c.charCodeAt(0))).toEqual(big);
  });

  it("builds a data URL from a blob with its type", async () => {
    const url = await blobToDataUrl(new Blob([new Uint8Array([1, 2, 3])], { type: "image/png" }));
    expect(url).toBe("data:image/png;base64,AQID");
    expect(dataUrlMime(url)).toBe("image/png");
    expect(dataUrlMime("not a data url")).toBeNull();
  });
});
