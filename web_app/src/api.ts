// Client for the iopaint server. Relative URLs only: the UI is served by the
// same server it talks to, so there is no host or CORS configuration.

export const API_BASE = "/api/v1";

export interface ModelInfo {
  name: string;
  path?: string;
  model_type?: string;
  available?: boolean;
  reason?: string | null;
}

export interface ServerConfig {
  modelInfos: ModelInfo[];
  /** Name of the model in use (some servers send the whole ModelInfo). */
  model?: string | ModelInfo | null;
  device?: string;
  enableAutoSaving?: boolean;
  disableModelSwitch?: boolean;
  version?: string;
}

export interface ModelsState {
  models: ModelInfo[];
  current: string | null;
  config: ServerConfig | null;
}

export interface InpaintRequest {
  image: string;
  mask: string;
  cv2_flag?: "INPAINT_NS" | "INPAINT_TELEA";
  cv2_radius?: number;
}

/** An error with a message fit to show a person. `status` is 0 when the server was not reached. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;

  constructor(status: number, code: string, detail = "") {
    super(detail ? `${code}: ${detail}` : code);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

type Fetch = typeof fetch;

/** Turns an error body's `detail` (string, list of FastAPI validation items, object) into text. */
export function formatDetail(detail: unknown): string {
  if (detail == null) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        if (item && typeof item === "object" && "msg" in item) {
          const loc = Array.isArray((item as { loc?: unknown }).loc)
            ? ((item as { loc: unknown[] }).loc).join(".")
            : "";
          const msg = String((item as { msg: unknown }).msg);
          return loc ? `${loc}: ${msg}` : msg;
        }
        return formatDetail(item);
      })
      .filter(Boolean)
      .join("; ");
  }
  if (typeof detail === "object") {
    try {
      return JSON.stringify(detail);
    } catch {
      return String(detail);
    }
  }
  return String(detail);
}

function statusText(res: Response): string {
  return `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`;
}

/** Reads a failed response into an ApiError, preferring the server's JSON {error, detail}. */
export async function errorFromResponse(res: Response): Promise<ApiError> {
  let text = "";
  try {
    text = await res.text();
  } catch {
    // Body unreadable: the status line is all we have.
  }
  if (text) {
    try {
      const body = JSON.parse(text) as { error?: unknown; detail?: unknown; message?: unknown };
      if (body && typeof body === "object") {
        const code = body.error != null ? formatDetail(body.error) : "";
        const detail = formatDetail(body.detail ?? body.message);
        if (code || detail) return new ApiError(res.status, code || statusText(res), detail);
      }
    } catch {
      // Not JSON (a proxy's HTML page, say): fall through to a trimmed text.
    }
    const plain = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 200);
    return new ApiError(res.status, statusText(res), plain);
  }
  return new ApiError(res.status, statusText(res));
}

function networkError(err: unknown): ApiError {
  const why = err instanceof Error ? err.message : String(err);
  return new ApiError(0, "Cannot reach the server", why);
}

export interface ApiClient {
  getServerConfig(): Promise<ServerConfig>;
  listModels(): Promise<ModelInfo[]>;
  getModel(): Promise<ModelInfo>;
  loadModels(): Promise<ModelsState>;
  switchModel(name: string): Promise<ModelInfo>;
  inpaint(req: InpaintRequest, signal?: AbortSignal): Promise<Blob>;
}

export function modelName(model: ServerConfig["model"]): string | null {
  if (!model) return null;
  if (typeof model === "string") return model;
  return typeof model.name === "string" ? model.name : null;
}

export function createApi(fetchImpl: Fetch = (...args) => fetch(...args), base = API_BASE): ApiClient {
  async function request(path: string, init?: RequestInit): Promise<Response> {
    let res: Response;
    try {
      res = await fetchImpl(`${base}${path}`, init);
    } catch (err) {
      if (err instanceof DOMException && err.name === "AbortError") throw err;
      throw networkError(err);
    }
    if (!res.ok) throw await errorFromResponse(res);
    return res;
  }

  async function json<T>(path: string, init?: RequestInit): Promise<T> {
    const res = await request(path, init);
    try {
      return (await res.json()) as T;
    } catch {
      throw new ApiError(res.status, "Unexpected response", `${path} did not return JSON`);
    }
  }

  const postJson = (body: unknown): RequestInit => ({
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });

  const api: ApiClient = {
    getServerConfig: () => json<ServerConfig>("/server-config"),
    listModels: () => json<ModelInfo[]>("/models"),
    getModel: () => json<ModelInfo>("/model"),

    async loadModels() {
      // server-config carries everything in one call; /models + /model is the
      // fallback for a server whose config lacks the list.
      let config: ServerConfig | null = null;
      let configError: unknown = null;
      try {
        config = await api.getServerConfig();
      } catch (err) {
        configError = err;
      }
      if (config && Array.isArray(config.modelInfos)) {
        return { models: config.modelInfos, current: modelName(config.model), config };
      }
      try {
        const models = await api.listModels();
        let current: string | null = null;
        try {
          current = (await api.getModel()).name ?? null;
        } catch {
          current = null;
        }
        return { models, current, config };
      } catch (err) {
        throw configError ?? err;
      }
    },

    async switchModel(name) {
      return json<ModelInfo>("/model", postJson({ name }));
    },

    async inpaint(req, signal) {
      const res = await request("/inpaint", { ...postJson(req), headers: { "Content-Type": "application/json" }, signal });
      const type = res.headers.get("Content-Type") ?? "";
      if (!type.startsWith("image/")) {
        throw new ApiError(res.status, "Unexpected response", `expected an image, got ${type || "no content type"}`);
      }
      const blob = await res.blob();
      // Some Response implementations drop the type; keep the server's.
      return blob.type ? blob : new Blob([blob], { type: type.split(";")[0] });
    },
  };
  return api;
}

export const api = createApi();
