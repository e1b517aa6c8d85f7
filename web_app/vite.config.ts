/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The server mounts the built UI at "/", but relative asset URLs keep the
// bundle working behind a path prefix (reverse proxy) as well.
export default defineConfig({
  base: "./",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    // The server's static mount is the only consumer; keep output small and flat.
    assetsInlineLimit: 4096,
  },
  server: {
    // `npm run dev` talks to a locally running `python -m iopaint start` on :8080.
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
