/**
 * pdf.js is given the CMaps and standard fonts bundled with the app: the
 * page renderer opens every document with their same-origin URLs, and the
 * build emits the files at exactly those places.
 */
import { readdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { loadPage } from "./setup";

const pdfjsRoot = resolve(__dirname, "../node_modules/pdfjs-dist");

interface FakePdfjs {
  options: Record<string, unknown>[];
  destroyed: number;
}

/** Stands in for pdf.js: records what `getDocument` is given, and opens a one-page document. */
function mockPdfjs(): FakePdfjs {
  const fake: FakePdfjs = { options: [], destroyed: 0 };
  const viewport = (scale: number) => ({ width: 600 * scale, height: 800 * scale, transform: [scale, 0, 0, -scale, 0, 800 * scale] });
  const page = {
    getViewport: ({ scale }: { scale: number }) => viewport(scale),
    render: () => ({ promise: Promise.resolve() }),
    getTextContent: async () => ({ items: [] }),
  };
  const doc = {
    numPages: 1,
    getPage: async () => page,
    destroy: async () => {
      fake.destroyed++;
    },
  };
  vi.doMock("pdfjs-dist", () => ({
    GlobalWorkerOptions: {},
    getDocument: (options: Record<string, unknown>) => {
      fake.options.push(options);
      return { promise: Promise.resolve(doc) };
    },
  }));
  return fake;
}

beforeEach(() => {
  vi.resetModules();
  loadPage();
  // jsdom has no 2D canvas; the mocked page draws nothing on it anyway.
  vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue({} as CanvasRenderingContext2D);
});

afterEach(() => {
  vi.doUnmock("pdfjs-dist");
});

describe("pdf.js data files", () => {
  it("opens every document with the bundled CMaps and standard fonts of the app's own origin", async () => {
    const fake = mockPdfjs();
    const { renderPage, CMAP_DIR, STANDARD_FONT_DIR } = await import("../src/pdfrender");
    const drawn = await renderPage(new Uint8Array([37, 80, 68, 70]), 1, 300);
    expect(drawn.width).toBe(300);
    expect(fake.options).toHaveLength(1);
    const options = fake.options[0];
    const origin = new URL(document.baseURI).origin;
    expect(options).toMatchObject({
      cMapUrl: `${origin}/${CMAP_DIR}`,
      cMapPacked: true,
      standardFontDataUrl: `${origin}/${STANDARD_FONT_DIR}`,
      isEvalSupported: false,
    });
    // pdf.js refuses a data-file URL without a trailing slash.
    expect(String(options.cMapUrl).endsWith("/")).toBe(true);
    expect(String(options.standardFontDataUrl).endsWith("/")).toBe(true);
    expect(fake.destroyed).toBe(1);
  });

  it("resolves the data folders against the page the app is served from", async () => {
    mockPdfjs();
    const { documentOptions } = await import("../src/pdfrender");
    const options = documentOptions("tauri://localhost/index.html");
    expect(options.cMapUrl).toBe("tauri://localhost/pdfjs/cmaps/");
    expect(options.standardFontDataUrl).toBe("tauri://localhost/pdfjs/standard_fonts/");
  });

  it("emits every CMap and standard font into the build where the renderer looks for them", async () => {
    mockPdfjs();
    const { CMAP_DIR, STANDARD_FONT_DIR } = await import("../src/pdfrender");
    const { pdfjsData } = await import("../vite.config");
    const emitted = new Map<string, Uint8Array>();
    const plugin = pdfjsData(pdfjsRoot);
    const generate = plugin.generateBundle as unknown as (this: unknown) => void;
    generate.call({
      emitFile: (file: { type: string; fileName: string; source: Uint8Array }) => {
        expect(file.type).toBe("asset");
        emitted.set(file.fileName, file.source);
        return file.fileName;
      },
    });
    const cmaps = readdirSync(resolve(pdfjsRoot, "cmaps")).filter((n) => n.endsWith(".bcmap"));
    const fonts = readdirSync(resolve(pdfjsRoot, "standard_fonts")).filter((n) => /\.(pfb|ttf)$/.test(n));
    expect(cmaps.length).toBeGreaterThan(100);
    expect(fonts).toContain("LiberationSans-Regular.ttf");
    for (const name of cmaps) expect(emitted.has(`${CMAP_DIR}${name}`), name).toBe(true);
    for (const name of fonts) expect(emitted.has(`${STANDARD_FONT_DIR}${name}`), name).toBe(true);
    expect(emitted.get(`${CMAP_DIR}UniJIS-UCS2-H.bcmap`)).toEqual(readFileSync(resolve(pdfjsRoot, "cmaps/UniJIS-UCS2-H.bcmap")));
    // The licences travel with the files they cover.
    expect(emitted.has(`${STANDARD_FONT_DIR}LICENSE_FOXIT`)).toBe(true);
    expect(emitted.has(`${CMAP_DIR}LICENSE`)).toBe(true);
  });

  it("fails the build with the missing folder named when pdf.js's data is not installed", async () => {
    const { pdfjsData } = await import("../vite.config");
    const plugin = pdfjsData(resolve(__dirname, "no-such-pdfjs"));
    const generate = plugin.generateBundle as unknown as (this: unknown) => void;
    expect(() => generate.call({ emitFile: () => "" })).toThrow(/no-such-pdfjs[/\\]cmaps/);
  });
});
