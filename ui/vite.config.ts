import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { defineConfig, type Plugin } from "vite";

/** Where pdf.js's data files come from, and where the app serves them. */
const PDFJS_DATA = [
  { from: "cmaps", to: "pdfjs/cmaps" },
  { from: "standard_fonts", to: "pdfjs/standard_fonts" },
];

/**
 * Ships pdf.js's CMaps and standard fonts with the app, as same-origin
 * files under `pdfjs/`: the build emits them into the output and the dev
 * server serves them, so a page that needs them never reaches the network.
 */
export function pdfjsData(root = resolve(__dirname, "node_modules/pdfjs-dist")): Plugin {
  const files = () =>
    PDFJS_DATA.flatMap(({ from, to }) =>
      readdirSync(join(root, from), { withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => ({ path: join(root, from, e.name), url: `${to}/${e.name}` })),
    );
  return {
    name: "lectern-pdfjs-data",
    configureServer(server) {
      const byUrl = new Map(files().map((f) => [`/${f.url}`, f.path]));
      server.middlewares.use((req, res, next) => {
        const path = byUrl.get((req.url ?? "").split("?")[0]);
        if (!path) return next();
        res.setHeader("Content-Type", "application/octet-stream");
        res.end(readFileSync(path));
      });
    },
    generateBundle() {
      for (const f of files()) {
        this.emitFile({ type: "asset", fileName: f.url, source: readFileSync(f.path) });
      }
    },
  };
}

// The Tauri webview on Linux is WebKitGTK; keep the output to what it runs.
export default defineConfig({
  clearScreen: false,
  plugins: [pdfjsData()],
  server: {
    port: 5173,
    strictPort: true,
    host: "localhost",
    watch: { ignored: ["**/src-tauri/**"] },
  },
  envPrefix: ["VITE_", "TAURI_ENV_"],
  build: {
    target: "safari15",
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    assetsInlineLimit: 0,
  },
});
