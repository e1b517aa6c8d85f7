// Pure geometry and mask rasterisation. Nothing here touches the DOM, so the
// exact pixels the server receives are unit-tested (see mask.test.ts).

export interface Point {
  x: number;
  y: number;
}

/** A brush stroke in image pixel coordinates; `size` is the brush diameter in image pixels. */
export interface Stroke {
  size: number;
  points: Point[];
}

/** The on-screen box an image is drawn into (a DOMRect has these fields). */
export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/**
 * Maps a pointer position in client (CSS pixel) coordinates to image pixel
 * coordinates, given the on-screen box the image is scaled into. Not clamped:
 * a stroke may start off the image and the rasteriser clips it.
 */
export function displayToImage(
  clientX: number,
  clientY: number,
  box: Box,
  imageWidth: number,
  imageHeight: number,
): Point {
  if (box.width <= 0 || box.height <= 0) return { x: 0, y: 0 };
  return {
    x: ((clientX - box.left) * imageWidth) / box.width,
    y: ((clientY - box.top) * imageHeight) / box.height,
  };
}

/** Inverse of displayToImage: image pixel -> client coordinates. */
export function imageToDisplay(
  x: number,
  y: number,
  box: Box,
  imageWidth: number,
  imageHeight: number,
): Point {
  return {
    x: box.left + (x * box.width) / imageWidth,
    y: box.top + (y * box.height) / imageHeight,
  };
}

/** The brush slider is in screen pixels; strokes are stored in image pixels. */
export function screenToImageLength(screenPx: number, boxWidth: number, imageWidth: number): number {
  if (boxWidth <= 0) return screenPx;
  return (screenPx * imageWidth) / boxWidth;
}

/** Largest size with the image's aspect ratio that fits in the available area. */
export function fitSize(
  imageWidth: number,
  imageHeight: number,
  availWidth: number,
  availHeight: number,
  maxScale = 4,
): { width: number; height: number; scale: number } {
  if (imageWidth <= 0 || imageHeight <= 0 || availWidth <= 0 || availHeight <= 0) {
    return { width: 0, height: 0, scale: 0 };
  }
  const scale = Math.min(availWidth / imageWidth, availHeight / imageHeight, maxScale);
  return {
    width: Math.max(1, Math.floor(imageWidth * scale)),
    height: Math.max(1, Math.floor(imageHeight * scale)),
    scale,
  };
}

/**
 * Appends a point unless it is closer than `minDistance` to the previous one,
 * which keeps long strokes small without changing their shape visibly.
 * Returns the same stroke object when nothing was added.
 */
export function appendPoint(stroke: Stroke, p: Point, minDistance: number): Stroke {
  const last = stroke.points[stroke.points.length - 1];
  if (last && Math.hypot(p.x - last.x, p.y - last.y) < minDistance) return stroke;
  return { size: stroke.size, points: [...stroke.points, p] };
}

/** Squared distance from (px, py) to the segment a-b. */
function dist2ToSegment(px: number, py: number, a: Point, b: Point): number {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const len2 = dx * dx + dy * dy;
  let t = len2 === 0 ? 0 : ((px - a.x) * dx + (py - a.y) * dy) / len2;
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  const cx = a.x + t * dx - px;
  const cy = a.y + t * dy - py;
  return cx * cx + cy * cy;
}

/**
 * Rasterises strokes into a binary mask (one byte per pixel, 0 or 255).
 * A pixel is masked when its centre lies within size/2 of the stroke's
 * polyline: the same shape a canvas draws with round caps and joins, but
 * without anti-aliasing, so the server's threshold at 127 changes nothing.
 */
export function rasterizeStrokes(strokes: readonly Stroke[], width: number, height: number): Uint8Array {
  const mask = new Uint8Array(width * height);
  for (const stroke of strokes) {
    if (stroke.points.length === 0) continue;
    const r = Math.max(0.5, stroke.size / 2);
    const r2 = r * r;
    const pts = stroke.points.length === 1 ? [stroke.points[0], stroke.points[0]] : stroke.points;
    for (let i = 1; i < pts.length; i++) {
      const a = pts[i - 1];
      const b = pts[i];
      const x0 = Math.max(0, Math.floor(Math.min(a.x, b.x) - r));
      const x1 = Math.min(width - 1, Math.ceil(Math.max(a.x, b.x) + r));
      const y0 = Math.max(0, Math.floor(Math.min(a.y, b.y) - r));
      const y1 = Math.min(height - 1, Math.ceil(Math.max(a.y, b.y) + r));
      for (let y = y0; y <= y1; y++) {
        const row = y * width;
        for (let x = x0; x <= x1; x++) {
          if (mask[row + x] === 0 && dist2ToSegment(x + 0.5, y + 0.5, a, b) <= r2) {
            mask[row + x] = 255;
          }
        }
      }
    }
  }
  return mask;
}

/** White-on-black, fully opaque RGBA pixels for a binary mask (ImageData layout). */
export function maskToRGBA(mask: Uint8Array): Uint8ClampedArray<ArrayBuffer> {
  const out = new Uint8ClampedArray(mask.length * 4);
  for (let i = 0; i < mask.length; i++) {
    const v = mask[i] ? 255 : 0;
    const o = i * 4;
    out[o] = v;
    out[o + 1] = v;
    out[o + 2] = v;
    out[o + 3] = 255;
  }
  return out;
}

/** Fraction of masked pixels, 0..1. */
export function maskCoverage(mask: Uint8Array): number {
  if (mask.length === 0) return 0;
  let n = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) n++;
  return n / mask.length;
}
