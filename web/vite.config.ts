import { defineConfig } from "vite";

// The client is served by the gateway from `dist/` (one origin, strict CSP: no inline script or
// style, so Vite's module preload polyfill, which injects an inline script, stays off).
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    reportCompressedSize: false,
  },
});
