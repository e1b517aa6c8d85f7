// The DOM side of the mask: drawing strokes for display and encoding the mask
// PNG. The pixel logic itself lives in mask.ts (pure, unit-tested).

import { maskToRGBA, rasterizeStrokes, type Stroke } from "./mask";

/** Draws strokes opaquely; the overlay canvas's CSS opacity makes them translucent. */
export function drawStrokes(ctx: CanvasRenderingContext2D, strokes: readonly Stroke[], color: string): void {
  ctx.save();
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const s of strokes) {
    if (s.points.length === 0) continue;
    if (s.points.length === 1) {
      const p = s.points[0];
      ctx.beginPath();
      ctx.arc(p.x, p.y, s.size / 2, 0, Math.PI * 2);
      ctx.fill();
      continue;
    }
    ctx.lineWidth = s.size;
    ctx.beginPath();
    ctx.moveTo(s.points[0].x, s.points[0].y);
    for (let i = 1; i < s.points.length; i++) ctx.lineTo(s.points[i].x, s.points[i].y);
    ctx.stroke();
  }
  ctx.restore();
}

/** The mask the server expects: a PNG the image's size, white where painted, black elsewhere. */
export function maskToDataUrl(strokes: readonly Stroke[], width: number, height: number): string {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  if (!ctx) throw new Error("This browser cannot draw on a canvas");
  const pixels = maskToRGBA(rasterizeStrokes(strokes, width, height));
  ctx.putImageData(new ImageData(pixels, width, height), 0, 0);
  return canvas.toDataURL("image/png");
}

/** Decodes an image URL and returns its natural size. */
export function loadImageSize(src: string): Promise<{ width: number; height: number }> {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve({ width: img.naturalWidth, height: img.naturalHeight });
    img.onerror = () => reject(new Error("The file could not be decoded as an image"));
    img.src = src;
  });
}
