import { describe, expect, it } from "vitest";
import {
  HISTORY_LIMIT,
  canUndo,
  currentImage,
  editorReducer,
  hasMask,
  initialEditorState,
  resultFileName,
  undoTarget,
  type EditorAction,
  type EditorState,
  type ImageEntry,
} from "./editor";

const img = (name: string): ImageEntry => ({ src: `data:image/png;base64,${name}`, width: 100, height: 50, name, mime: "image/png" });
const run = (actions: EditorAction[], from: EditorState = initialEditorState) => actions.reduce(editorReducer, from);
const stroke = (x: number): EditorAction[] => [
  { type: "strokeStart", point: { x, y: 10 }, size: 8 },
  { type: "strokeMove", point: { x: x + 20, y: 10 } },
  { type: "strokeEnd" },
];

describe("editorReducer", () => {
  it("ignores strokes before an image is open", () => {
    const s = run(stroke(0));
    expect(s).toEqual(initialEditorState);
    expect(canUndo(s)).toBe(false);
  });

  it("records strokes as an undo stack", () => {
    const s = run([{ type: "open", image: img("a") }, ...stroke(0), ...stroke(40)]);
    expect(s.strokes).toHaveLength(2);
    expect(s.strokes[0].points).toEqual([{ x: 0, y: 10 }, { x: 20, y: 10 }]);
    expect(hasMask(s)).toBe(true);
    expect(undoTarget(s)).toBe("stroke");

    const u1 = editorReducer(s, { type: "undo" });
    expect(u1.strokes).toHaveLength(1);
    expect(u1.strokes[0].points[0].x).toBe(0); // the last stroke went first
    const u2 = editorReducer(u1, { type: "undo" });
    expect(u2.strokes).toHaveLength(0);
    expect(canUndo(u2)).toBe(false);
    expect(editorReducer(u2, { type: "undo" })).toBe(u2);
  });

  it("drops tiny moves that add nothing visible", () => {
    const s = run([
      { type: "open", image: img("a") },
      { type: "strokeStart", point: { x: 0, y: 0 }, size: 40 },
      { type: "strokeMove", point: { x: 3, y: 0 } },
      { type: "strokeMove", point: { x: 12, y: 0 } },
    ]);
    expect(s.active?.points).toEqual([{ x: 0, y: 0 }, { x: 12, y: 0 }]);
  });

  it("undo during a stroke cancels just that stroke", () => {
    const s = run([{ type: "open", image: img("a") }, ...stroke(0), { type: "strokeStart", point: { x: 1, y: 1 }, size: 4 }, { type: "undo" }]);
    expect(s.active).toBeNull();
    expect(s.strokes).toHaveLength(1);
  });

  it("clear removes every stroke but keeps the image", () => {
    const s = run([{ type: "open", image: img("a") }, ...stroke(0), ...stroke(5), { type: "clear" }]);
    expect(s.strokes).toEqual([]);
    expect(currentImage(s)?.name).toBe("a");
  });

  it("a result replaces the image, clears the mask, and can be undone", () => {
    const s = run([{ type: "open", image: img("a") }, ...stroke(0), { type: "result", image: img("b") }]);
    expect(currentImage(s)?.name).toBe("b");
    expect(s.strokes).toEqual([]);
    expect(undoTarget(s)).toBe("result");

    // Painting again on the result works, and undo walks back strokes first.
    const again = run(stroke(3), s);
    expect(again.strokes).toHaveLength(1);
    const back = run([{ type: "undo" }, { type: "undo" }], again);
    expect(currentImage(back)?.name).toBe("a");
    expect(canUndo(back)).toBe(false);
  });

  it("opening a new image resets history and mask", () => {
    const s = run([{ type: "open", image: img("a") }, ...stroke(0), { type: "result", image: img("b") }, { type: "open", image: img("c") }]);
    expect(s.history.map((h) => h.name)).toEqual(["c"]);
    expect(s.strokes).toEqual([]);
  });

  it("keeps at most HISTORY_LIMIT images", () => {
    let s = run([{ type: "open", image: img("0") }]);
    for (let i = 1; i <= HISTORY_LIMIT + 5; i++) s = editorReducer(s, { type: "result", image: img(String(i)) });
    expect(s.history).toHaveLength(HISTORY_LIMIT);
    expect(currentImage(s)?.name).toBe(String(HISTORY_LIMIT + 5));
  });

  it("rejects a zero-size brush", () => {
    const s = run([{ type: "open", image: img("a") }, { type: "strokeStart", point: { x: 0, y: 0 }, size: 0 }]);
    expect(s.active).toBeNull();
  });
});

describe("resultFileName", () => {
  it("names the download after the original and the result's type", () => {
    expect(resultFileName("photo.jpg", "image/jpeg")).toBe("photo_inpainted.jpg");
    expect(resultFileName("scan.PNG", "image/png")).toBe("scan_inpainted.png");
    expect(resultFileName("photo_inpainted.png", "image/png")).toBe("photo_inpainted.png");
    expect(resultFileName("noext", "image/webp")).toBe("noext_inpainted.webp");
    expect(resultFileName("", "image/x-unknown")).toBe("image_inpainted.png");
  });
});
