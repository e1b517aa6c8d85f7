import { useEffect, useLayoutEffect, useRef, useState, type DragEvent, type PointerEvent } from "react";
import { drawStrokes } from "../canvas";
import type { ImageEntry } from "../editor";
import { displayToImage, fitSize, screenToImageLength, type Point, type Stroke } from "../mask";

const MASK_COLOR = "#ff3d7f";
/** Room around the image inside the stage, in CSS pixels. */
const STAGE_PADDING = 32;

interface StageProps {
  image: ImageEntry | null;
  strokes: readonly Stroke[];
  active: Stroke | null;
  /** Brush diameter in screen pixels. */
  brushSize: number;
  busy: boolean;
  onStrokeStart(point: Point, size: number): void;
  onStrokeMove(point: Point): void;
  onStrokeEnd(): void;
  onFile(file: File): void;
  onOpenClick(): void;
  onScale(scale: number): void;
}

export function Stage(props: StageProps) {
  const { image, strokes, active, brushSize, busy } = props;
  const areaRef = useRef<HTMLDivElement>(null);
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const [area, setArea] = useState({ width: 0, height: 0 });
  const [cursor, setCursor] = useState<{ x: number; y: number } | null>(null);
  const [dragging, setDragging] = useState(false);
  const drawing = useRef(false);

  // Track the stage's size so the image is fitted to it.
  useLayoutEffect(() => {
    const el = areaRef.current;
    if (!el) return;
    const measure = () => setArea({ width: el.clientWidth, height: el.clientHeight });
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const fit = image
    ? fitSize(image.width, image.height, area.width - STAGE_PADDING * 2, area.height - STAGE_PADDING * 2)
    : null;

  const { onScale } = props;
  useEffect(() => {
    onScale(fit?.scale ?? 0);
  }, [fit?.scale, onScale]);

  // Redraw the overlay whenever the strokes change.
  useEffect(() => {
    const canvas = canvasRef.current;
    if (!canvas || !image) return;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    drawStrokes(ctx, active ? [...strokes, active] : strokes, MASK_COLOR);
  }, [image, strokes, active]);

  const toImage = (e: PointerEvent<HTMLCanvasElement>): Point | null => {
    const canvas = canvasRef.current;
    if (!canvas || !image) return null;
    return displayToImage(e.clientX, e.clientY, canvas.getBoundingClientRect(), image.width, image.height);
  };

  const onPointerDown = (e: PointerEvent<HTMLCanvasElement>) => {
    if (busy || e.button !== 0 || !image) return;
    const p = toImage(e);
    if (!p) return;
    e.currentTarget.setPointerCapture(e.pointerId);
    drawing.current = true;
    const rect = e.currentTarget.getBoundingClientRect();
    props.onStrokeStart(p, screenToImageLength(brushSize, rect.width, image.width));
  };

  const onPointerMove = (e: PointerEvent<HTMLCanvasElement>) => {
    const rect = e.currentTarget.getBoundingClientRect();
    setCursor({ x: e.clientX - rect.left, y: e.clientY - rect.top });
    if (!drawing.current) return;
    // Coalesced events keep fast strokes smooth instead of polygonal.
    const events = e.nativeEvent.getCoalescedEvents?.() ?? [];
    const list = events.length ? events : [e.nativeEvent];
    for (const ev of list) {
      if (!image) break;
      props.onStrokeMove(displayToImage(ev.clientX, ev.clientY, rect, image.width, image.height));
    }
  };

  const endStroke = () => {
    if (!drawing.current) return;
    drawing.current = false;
    props.onStrokeEnd();
  };

  const onDragOver = (e: DragEvent) => {
    if (!Array.from(e.dataTransfer.types).includes("Files")) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    setDragging(true);
  };

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    const file = Array.from(e.dataTransfer.files).find((f) => f.type.startsWith("image/")) ?? e.dataTransfer.files[0];
    if (file) props.onFile(file);
  };

  return (
    <div
      ref={areaRef}
      className={`stage${dragging ? " stage--drag" : ""}`}
      data-testid="stage"
      onDragOver={onDragOver}
      onDragEnter={onDragOver}
      onDragLeave={(e) => {
        if (e.currentTarget === e.target) setDragging(false);
      }}
      onDrop={onDrop}
    >
      {image && fit ? (
        <div className="canvas-wrap" style={{ width: fit.width, height: fit.height }}>
          <img
            className="canvas-image"
            data-testid="image"
            src={image.src}
            alt={image.name}
            width={fit.width}
            height={fit.height}
            draggable={false}
          />
          <canvas
            ref={canvasRef}
            className={`mask-canvas${busy ? " mask-canvas--busy" : ""}`}
            data-testid="mask-canvas"
            width={image.width}
            height={image.height}
            onPointerDown={onPointerDown}
            onPointerMove={onPointerMove}
            onPointerUp={endStroke}
            onPointerCancel={endStroke}
            onPointerLeave={() => setCursor(null)}
          />
          {cursor && !busy && (
            <div
              className="brush-cursor"
              style={{ width: brushSize, height: brushSize, left: cursor.x - brushSize / 2, top: cursor.y - brushSize / 2 }}
            />
          )}
          {busy && (
            <div className="busy-veil" data-testid="busy">
              <div className="spinner" />
              <span>Inpainting…</span>
            </div>
          )}
        </div>
      ) : (
        <button type="button" className="dropzone" data-testid="dropzone" onClick={props.onOpenClick}>
          <svg viewBox="0 0 24 24" width="48" height="48" aria-hidden="true">
            <path
              fill="currentColor"
              d="M19 13v6H5v-6H3v6a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2v-6h-2zM11 5.8 7.4 9.4 6 8l6-6 6 6-1.4 1.4L13 5.8V16h-2V5.8z"
            />
          </svg>
          <strong>Drop an image here</strong>
          <span>or click to choose a file — PNG, JPEG or WebP</span>
        </button>
      )}
      {dragging && <div className="drop-hint">Drop to open</div>}
    </div>
  );
}
