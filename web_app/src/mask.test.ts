import { describe, expect, it } from "vitest";
import {
  appendPoint,
  displayToImage,
  fitSize,
  imageToDisplay,
  maskCoverage,
  maskToRGBA,
  rasterizeStrokes,
  screenToImageLength,
  type Stroke,
} from "./mask";

const at = (mask: Uint8Array, width: number, x: number, y: number) => mask[y * width + x];

describe("displayToImage", () => {
  it("maps the box corners to the image corners", () => {
    const box = { left: 100, top: 50, width: 400, height: 300 };
    expect(displayToImage(100, 50, box, 800, 600)).toEqual({ x: 0, y: 0 });
    expect(displayToImage(500, 350, box, 800, 600)).toEqual({ x: 800, y: 600 });
  });

  it("scales down when the image is shown enlarged", () => {
    const box = { left: 0, top: 0, width: 1000, height: 500 };
    expect(displayToImage(250, 100, box, 200, 100)).toEqual({ x: 50, y: 20 });
  });

  it("does not clamp points outside the image (the rasteriser clips)", () => {
    const box = { left: 10, top: 10, width: 100, height: 100 };
    expect(displayToImage(0, 120, box, 100, 100)).toEqual({ x: -10, y: 110 });
  });

  it("round-trips with imageToDisplay", () => {
    const box = { left: 33, top: 7, width: 321, height: 123 };
    const p = imageToDisplay(640, 120, box, 1280, 480);
    const back = displayToImage(p.x, p.y, box, 1280, 480);
    expect(back.x).toBeCloseTo(640, 9);
    expect(back.y).toBeCloseTo(120, 9);
  });

  it("returns the origin for an empty box instead of dividing by zero", () => {
    expect(displayToImage(5, 5, { left: 0, top: 0, width: 0, height: 0 }, 10, 10)).toEqual({ x: 0, y: 0 });
  });
});

describe("screenToImageLength / fitSize", () => {
  it("converts a screen brush size to image pixels", () => {
    expect(screenToImageLength(40, 500, 1000)).toBe(80);
    expect(screenToImageLength(40, 2000, 1000)).toBe(20);
  });

  it("fits a wide image by width and keeps the aspect ratio", () => {
    expect(fitSize(2000, 1000, 1000, 1000)).toEqual({ width: 1000, height: 500, scale: 0.5 });
  });

  it("fits a tall image by height", () => {
    const f = fitSize(1000, 3000, 800, 600);
    expect(f.height).toBe(600);
    expect(f.width).toBe(200);
  });

  it("caps enlargement of small images", () => {
    expect(fitSize(10, 10, 1000, 1000, 4)).toEqual({ width: 40, height: 40, scale: 4 });
  });

  it("gives zero for an area not laid out yet", () => {
    expect(fitSize(100, 100, 0, 500).width).toBe(0);
  });
});

describe("appendPoint", () => {
  it("skips points closer than the minimum distance", () => {
    const s: Stroke = { size: 10, points: [{ x: 0, y: 0 }] };
    expect(appendPoint(s, { x: 1, y: 1 }, 2)).toBe(s);
    const t = appendPoint(s, { x: 3, y: 0 }, 2);
    expect(t.points).toEqual([{ x: 0, y: 0 }, { x: 3, y: 0 }]);
    expect(s.points).toHaveLength(1); // not mutated
  });
});

describe("rasterizeStrokes", () => {
  it("is all black without strokes", () => {
    const m = rasterizeStrokes([], 8, 6);
    expect(m).toHaveLength(48);
    expect(maskCoverage(m)).toBe(0);
  });

  it("paints a disc for a single-point stroke", () => {
    const m = rasterizeStrokes([{ size: 6, points: [{ x: 10, y: 10 }] }], 20, 20);
    expect(at(m, 20, 10, 10)).toBe(255);
    expect(at(m, 20, 7, 10)).toBe(255); // centre (7.5,10.5) is 2.55 away, within r=3
    expect(at(m, 20, 5, 10)).toBe(0); // 4.5 away
    expect(at(m, 20, 11, 11)).toBe(255); // (11.5,11.5) is 2.12 away
    expect(at(m, 20, 12, 12)).toBe(0); // (12.5,12.5) is 3.54 away, outside the diagonal
  });

  it("masks exactly the pixels whose centre is within the radius", () => {
    const size = 9;
    const c = { x: 16, y: 16 };
    const m = rasterizeStrokes([{ size, points: [c] }], 32, 32);
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) {
        const inside = Math.hypot(x + 0.5 - c.x, y + 0.5 - c.y) <= size / 2;
        expect(at(m, 32, x, y)).toBe(inside ? 255 : 0);
      }
    }
  });

  it("covers a thick segment between two points, with round caps", () => {
    const m = rasterizeStrokes([{ size: 4, points: [{ x: 5, y: 10 }, { x: 25, y: 10 }] }], 32, 20);
    for (let x = 5; x < 25; x++) {
      expect(at(m, 32, x, 9)).toBe(255);
      expect(at(m, 32, x, 10)).toBe(255);
      expect(at(m, 32, x, 12)).toBe(0); // 2.5 from the line
    }
    expect(at(m, 32, 3, 9)).toBe(255); // cap: (3.5,9.5) is 1.58 from (5,10)
    expect(at(m, 32, 1, 10)).toBe(0);
    expect(at(m, 32, 28, 10)).toBe(0);
  });

  it("follows a polyline through its corner", () => {
    const m = rasterizeStrokes(
      [{ size: 2, points: [{ x: 2, y: 2 }, { x: 20, y: 2 }, { x: 20, y: 20 }] }],
      24,
      24,
    );
    expect(at(m, 24, 10, 1)).toBe(255);
    expect(at(m, 24, 19, 10)).toBe(255);
    expect(at(m, 24, 10, 10)).toBe(0);
  });

  it("clips strokes that leave the image", () => {
    const m = rasterizeStrokes([{ size: 10, points: [{ x: -50, y: 3 }, { x: 50, y: 3 }] }], 10, 10);
    expect(at(m, 10, 0, 0)).toBe(255);
    expect(at(m, 10, 9, 7)).toBe(255);
    expect(at(m, 10, 9, 9)).toBe(0);
  });

  it("unions several strokes", () => {
    const m = rasterizeStrokes(
      [
        { size: 2, points: [{ x: 1, y: 1 }] },
        { size: 2, points: [{ x: 8, y: 8 }] },
      ],
      10,
      10,
    );
    expect(at(m, 10, 1, 1)).toBe(255);
    expect(at(m, 10, 8, 8)).toBe(255);
    expect(maskCoverage(m)).toBeCloseTo(8 / 100);
  });
});

describe("maskToRGBA", () => {
  it("is white where masked, black elsewhere, always opaque", () => {
    const rgba = maskToRGBA(Uint8Array.from([0, 255, 0]));
    expect(Array.from(rgba)).toEqual([0, 0, 0, 255, 255, 255, 255, 255, 0, 0, 0, 255]);
  });
});
