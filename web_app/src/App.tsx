import { useCallback, useEffect, useReducer, useRef, useState } from "react";
import { ApiError, api, type ModelInfo, type ServerConfig } from "./api";
import { loadImageSize, maskToDataUrl } from "./canvas";
import { blobToDataUrl } from "./dataurl";
import {
  canUndo,
  currentImage,
  editorReducer,
  hasMask,
  initialEditorState,
  resultFileName,
  undoTarget,
} from "./editor";
import type { Point } from "./mask";
import { ModelPicker } from "./components/ModelPicker";
import { Stage } from "./components/Stage";

const BRUSH_MIN = 4;
const BRUSH_MAX = 200;

interface Notice {
  title: string;
  detail: string;
}

function toNotice(err: unknown, context: string): Notice {
  if (err instanceof ApiError) {
    return { title: `${context}: ${err.code}`, detail: err.detail };
  }
  return { title: context, detail: err instanceof Error ? err.message : String(err) };
}

export function App() {
  const [editor, dispatch] = useReducer(editorReducer, initialEditorState);
  const [brushSize, setBrushSize] = useState(40);
  const [models, setModels] = useState<ModelInfo[] | null>(null);
  const [current, setCurrent] = useState<string | null>(null);
  const [config, setConfig] = useState<ServerConfig | null>(null);
  const [switching, setSwitching] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Notice | null>(null);
  const [status, setStatus] = useState("");
  const [scale, setScale] = useState(0);
  const [cv2Flag, setCv2Flag] = useState<"INPAINT_NS" | "INPAINT_TELEA">("INPAINT_NS");
  const [cv2Radius, setCv2Radius] = useState(4);
  const fileInput = useRef<HTMLInputElement>(null);

  const image = currentImage(editor);
  const masked = hasMask(editor);

  const loadModels = useCallback(async () => {
    try {
      const state = await api.loadModels();
      setModels(state.models);
      setCurrent(state.current);
      setConfig(state.config);
    } catch (err) {
      setModels([]);
      setError(toNotice(err, "Could not load the model list"));
    }
  }, []);

  useEffect(() => {
    void loadModels();
  }, [loadModels]);

  const openFile = useCallback(async (file: File) => {
    if (file.type && !file.type.startsWith("image/")) {
      setError({ title: "Not an image", detail: `${file.name} is ${file.type}; choose a PNG, JPEG or WebP file.` });
      return;
    }
    try {
      const src = await blobToDataUrl(file, "image/png");
      const { width, height } = await loadImageSize(src);
      dispatch({
        type: "open",
        image: { src, width, height, name: file.name || "image.png", mime: file.type || "image/png" },
      });
      setError(null);
      setStatus(`Opened ${file.name} (${width}×${height})`);
    } catch (err) {
      setError(toNotice(err, `Could not open ${file.name}`));
    }
  }, []);

  const runInpaint = useCallback(async () => {
    if (!image || !masked || busy) return;
    setBusy(true);
    setError(null);
    setStatus("Inpainting…");
    const started = performance.now();
    try {
      const mask = maskToDataUrl(editor.strokes, image.width, image.height);
      const blob = await api.inpaint({
        image: image.src,
        mask,
        ...(current === "cv2" ? { cv2_flag: cv2Flag, cv2_radius: cv2Radius } : {}),
      });
      const mime = blob.type || image.mime;
      const src = await blobToDataUrl(blob, mime);
      const size = await loadImageSize(src);
      dispatch({ type: "result", image: { src, ...size, name: image.name, mime } });
      setStatus(`Inpainted in ${((performance.now() - started) / 1000).toFixed(2)} s`);
    } catch (err) {
      setError(toNotice(err, "Inpainting failed"));
      setStatus("");
    } finally {
      setBusy(false);
    }
  }, [image, masked, busy, editor.strokes, current, cv2Flag, cv2Radius]);

  const selectModel = useCallback(
    async (name: string) => {
      setSwitching(name);
      setError(null);
      try {
        const info = await api.switchModel(name);
        setCurrent(info?.name ?? name);
        setStatus(`Model: ${info?.name ?? name}`);
      } catch (err) {
        setError(toNotice(err, `Could not switch to ${name}`));
      } finally {
        setSwitching(null);
      }
    },
    [],
  );

  // Keyboard: Ctrl/Cmd+Z undo, [ and ] brush size, Ctrl/Cmd+Enter inpaint.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement | null;
      if (target && (target.tagName === "INPUT" || target.tagName === "SELECT") && target.getAttribute("type") !== "range") return;
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z" && !e.shiftKey) {
        e.preventDefault();
        dispatch({ type: "undo" });
      } else if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
        e.preventDefault();
        void runInpaint();
      } else if (e.key === "[") {
        setBrushSize((s) => Math.max(BRUSH_MIN, s - 5));
      } else if (e.key === "]") {
        setBrushSize((s) => Math.min(BRUSH_MAX, s + 5));
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [runInpaint]);

  // A file dropped outside the stage must not navigate away; a pasted image opens.
  useEffect(() => {
    const block = (e: globalThis.DragEvent) => e.preventDefault();
    const onPaste = (e: ClipboardEvent) => {
      const file = Array.from(e.clipboardData?.files ?? []).find((f) => f.type.startsWith("image/"));
      if (file) void openFile(file);
    };
    window.addEventListener("dragover", block);
    window.addEventListener("drop", block);
    window.addEventListener("paste", onPaste);
    return () => {
      window.removeEventListener("dragover", block);
      window.removeEventListener("drop", block);
      window.removeEventListener("paste", onPaste);
    };
  }, [openFile]);

  const onStrokeStart = useCallback((point: Point, size: number) => dispatch({ type: "strokeStart", point, size }), []);
  const onStrokeMove = useCallback((point: Point) => dispatch({ type: "strokeMove", point }), []);
  const onStrokeEnd = useCallback(() => dispatch({ type: "strokeEnd" }), []);

  const undoWhat = undoTarget(editor);
  const edited = editor.history.length > 1;
  const downloadName = image ? (edited ? resultFileName(image.name, image.mime) : image.name) : "";
  const switchLocked = config?.disableModelSwitch === true;

  return (
    <div className="app">
      <header className="topbar">
        <div className="brand">
          <span className="brand__logo" aria-hidden="true" />
          <h1>IOPaint</h1>
          <span className="brand__tag">erase anything, fill it back in</span>
        </div>
        <div className="server-info" data-testid="server-info">
          {current && (
            <span className="pill" data-testid="current-model">
              <span className="pill__dot" /> {current}
            </span>
          )}
          {config?.device && <span className="pill pill--plain">{config.device}</span>}
          {config?.enableAutoSaving && <span className="pill pill--plain" title="Results are also saved on the server">auto-save</span>}
          {config?.version && <span className="pill pill--plain">v{config.version}</span>}
        </div>
      </header>

      <div className="workspace">
        <aside className="sidebar">
          <section className="panel">
            <h2>Image</h2>
            <div className="row">
              <button type="button" className="btn" data-testid="open-button" onClick={() => fileInput.current?.click()} disabled={busy}>
                Open…
              </button>
              <a
                className={`btn${image ? "" : " btn--disabled"}`}
                data-testid="download-button"
                href={image?.src}
                download={downloadName || undefined}
                aria-disabled={!image}
                onClick={(e) => {
                  if (!image) e.preventDefault();
                }}
              >
                Download
              </a>
            </div>
            <input
              ref={fileInput}
              type="file"
              accept="image/*"
              hidden
              data-testid="file-input"
              onChange={(e) => {
                const file = e.target.files?.[0];
                if (file) void openFile(file);
                e.target.value = "";
              }}
            />
          </section>

          <section className="panel">
            <h2>Mask</h2>
            <label className="slider">
              <span>
                Brush size <output data-testid="brush-size-value">{brushSize}px</output>
              </span>
              <input
                type="range"
                min={BRUSH_MIN}
                max={BRUSH_MAX}
                value={brushSize}
                data-testid="brush-size"
                onChange={(e) => setBrushSize(Number(e.target.value))}
              />
            </label>
            <div className="row">
              <button
                type="button"
                className="btn"
                data-testid="undo-button"
                disabled={!canUndo(editor) || busy}
                title={undoWhat === "result" ? "Undo the last inpainting (Ctrl+Z)" : "Undo the last stroke (Ctrl+Z)"}
                onClick={() => dispatch({ type: "undo" })}
              >
                {undoWhat === "result" ? "Undo result" : "Undo"}
              </button>
              <button
                type="button"
                className="btn"
                data-testid="clear-button"
                disabled={!editor.strokes.length || busy}
                onClick={() => dispatch({ type: "clear" })}
              >
                Clear
              </button>
            </div>
            <button
              type="button"
              className="btn btn--primary btn--wide"
              data-testid="inpaint-button"
              disabled={!image || !masked || busy || switching !== null}
              onClick={() => void runInpaint()}
              title="Ctrl+Enter"
            >
              {busy ? "Inpainting…" : "Inpaint"}
            </button>
            <p className="hint">{image ? (masked ? "Press Inpaint to fill the painted area." : "Paint over what should disappear.") : "Open an image to start."}</p>
          </section>

          <section className="panel">
            <h2>Model</h2>
            <ModelPicker
              models={models}
              current={current}
              switching={switching}
              disabled={busy || switchLocked}
              onSelect={(name) => void selectModel(name)}
            />
            {switchLocked && <p className="hint">Model switching is disabled on this server.</p>}
            {current === "cv2" && (
              <div className="options" data-testid="cv2-options">
                <label className="field">
                  <span>Algorithm</span>
                  <select value={cv2Flag} onChange={(e) => setCv2Flag(e.target.value as typeof cv2Flag)}>
                    <option value="INPAINT_NS">Navier–Stokes</option>
                    <option value="INPAINT_TELEA">Telea</option>
                  </select>
                </label>
                <label className="slider">
                  <span>
                    Radius <output>{cv2Radius}</output>
                  </span>
                  <input type="range" min={1} max={20} value={cv2Radius} onChange={(e) => setCv2Radius(Number(e.target.value))} />
                </label>
              </div>
            )}
          </section>
        </aside>

        <main className="main">
          {error && (
            <div className="alert" role="alert" data-testid="error-message">
              <div>
                <strong>{error.title}</strong>
                {error.detail && <p>{error.detail}</p>}
              </div>
              <button type="button" className="alert__close" aria-label="Dismiss" onClick={() => setError(null)}>
                ×
              </button>
            </div>
          )}
          <Stage
            image={image}
            strokes={editor.strokes}
            active={editor.active}
            brushSize={brushSize}
            busy={busy}
            onStrokeStart={onStrokeStart}
            onStrokeMove={onStrokeMove}
            onStrokeEnd={onStrokeEnd}
            onFile={(f) => void openFile(f)}
            onOpenClick={() => fileInput.current?.click()}
            onScale={setScale}
          />
          <footer className="statusbar" data-testid="status-bar">
            <span data-testid="image-info">
              {image ? `${image.name} · ${image.width}×${image.height} · ${Math.round(scale * 100)}%` : "No image"}
            </span>
            <span>
              {image && `${editor.strokes.length} stroke${editor.strokes.length === 1 ? "" : "s"}`}
              {edited && ` · ${editor.history.length - 1} result${editor.history.length === 2 ? "" : "s"}`}
            </span>
            <span data-testid="status" aria-live="polite">
              {status}
            </span>
          </footer>
        </main>
      </div>
    </div>
  );
}
