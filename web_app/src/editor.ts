// The editor's state as a pure reducer: the image history (original, then each
// inpainting result) and the mask strokes painted on the current image.
// Undo walks back strokes first, then results, so nothing is lost by accident.

import { appendPoint, type Point, type Stroke } from "./mask";

export interface ImageEntry {
  /** data: URL of the encoded image (what is sent to the server). */
  src: string;
  width: number;
  height: number;
  /** File name offered on download. */
  name: string;
  /** MIME type of the encoded image, e.g. "image/png". */
  mime: string;
}

export interface EditorState {
  /** history[0] is the opened image; the last entry is the one shown. */
  history: ImageEntry[];
  /** Finished strokes on the current image, oldest first (the undo stack). */
  strokes: Stroke[];
  /** The stroke under the pointer right now, if any. */
  active: Stroke | null;
}

export type EditorAction =
  | { type: "open"; image: ImageEntry }
  | { type: "strokeStart"; point: Point; size: number }
  | { type: "strokeMove"; point: Point }
  | { type: "strokeEnd" }
  | { type: "undo" }
  | { type: "clear" }
  | { type: "result"; image: ImageEntry };

/** How many images (original + results) are kept for undo. */
export const HISTORY_LIMIT = 10;

export const initialEditorState: EditorState = { history: [], strokes: [], active: null };

export function currentImage(state: EditorState): ImageEntry | null {
  return state.history.length ? state.history[state.history.length - 1] : null;
}

export function canUndo(state: EditorState): boolean {
  return state.active !== null || state.strokes.length > 0 || state.history.length > 1;
}

/** What the next undo would revert, for the button's tooltip. */
export function undoTarget(state: EditorState): "stroke" | "result" | null {
  if (state.active || state.strokes.length) return "stroke";
  if (state.history.length > 1) return "result";
  return null;
}

export function hasMask(state: EditorState): boolean {
  return state.strokes.some((s) => s.points.length > 0);
}

export function editorReducer(state: EditorState, action: EditorAction): EditorState {
  switch (action.type) {
    case "open":
      return { history: [action.image], strokes: [], active: null };

    case "strokeStart":
      if (!currentImage(state) || !(action.size > 0)) return state;
      return { ...state, active: { size: action.size, points: [action.point] } };

    case "strokeMove": {
      if (!state.active) return state;
      // Points closer than a quarter of the brush add nothing visible.
      const next = appendPoint(state.active, action.point, Math.max(1, state.active.size / 4));
      return next === state.active ? state : { ...state, active: next };
    }

    case "strokeEnd":
      if (!state.active) return state;
      return { ...state, strokes: [...state.strokes, state.active], active: null };

    case "undo":
      if (state.active) return { ...state, active: null };
      if (state.strokes.length) return { ...state, strokes: state.strokes.slice(0, -1) };
      if (state.history.length > 1) return { ...state, history: state.history.slice(0, -1) };
      return state;

    case "clear":
      if (!state.strokes.length && !state.active) return state;
      return { ...state, strokes: [], active: null };

    case "result": {
      const history = [...state.history, action.image];
      return {
        history: history.length > HISTORY_LIMIT ? history.slice(history.length - HISTORY_LIMIT) : history,
        strokes: [],
        active: null,
      };
    }
  }
}

const EXT_BY_MIME: Record<string, string> = {
  "image/png": "png",
  "image/jpeg": "jpg",
  "image/webp": "webp",
  "image/bmp": "bmp",
  "image/gif": "gif",
};

/** "photo.jpg" + "image/jpeg" -> "photo_inpainted.jpg". */
export function resultFileName(originalName: string, mime: string): string {
  const dot = originalName.lastIndexOf(".");
  const base = (dot > 0 ? originalName.slice(0, dot) : originalName) || "image";
  const ext = EXT_BY_MIME[mime.toLowerCase()] ?? (dot > 0 ? originalName.slice(dot + 1) : "png");
  return `${base.replace(/_inpainted$/, "")}_inpainted.${ext}`;
}
