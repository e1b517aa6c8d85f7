// data: URL helpers. Base64 is done by hand (not FileReader) so the same code
// runs in the browser and in Node's test runner.

/** Base64 of bytes, in chunks so large images don't overflow the argument list. */
export function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode.apply(null, Array.from(bytes.subarray(i, i + chunk)));
  }
  return btoa(binary);
}

export async function blobToDataUrl(blob: Blob, fallbackMime = "application/octet-stream"): Promise<string> {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  return `data:${blob.type || fallbackMime};base64,${bytesToBase64(bytes)}`;
}

/** "data:image/png;base64,..." -> "image/png" (null when not a data URL). */
export function dataUrlMime(url: string): string | null {
  const m = /^data:([^;,]+)[;,]/.exec(url);
  return m ? m[1].toLowerCase() : null;
}
