/**
 * Draws one PDF page with pdf.js: the page on a canvas and the positions of
 * its text runs, for highlighting. The worker, the CMaps (for CJK and other
 * CID-keyed fonts) and the standard fonts (for PDFs that name one of the 14
 * base fonts without embedding it) are bundled with the app as same-origin
 * files (see `vite.config.ts`), and pdf.js runs without `eval`, so the
 * window's strict content security policy holds.
 */
import { getDocument, GlobalWorkerOptions } from "pdfjs-dist";
import workerUrl from "pdfjs-dist/build/pdf.worker.min.mjs?url";
import { textRuns, type DrawnPage } from "./pdfview";

GlobalWorkerOptions.workerSrc = workerUrl;

/** Where the build puts pdf.js's data files, relative to the app's root. */
export const CMAP_DIR = "pdfjs/cmaps/";
export const STANDARD_FONT_DIR = "pdfjs/standard_fonts/";

/**
 * The options every document is opened with: the bundled data files as
 * absolute URLs of the app's own origin (pdf.js wants a trailing slash).
 */
export function documentOptions(base: string = document.baseURI) {
  const root = new URL(import.meta.env.BASE_URL, base);
  return {
    isEvalSupported: false,
    disableFontFace: false,
    useSystemFonts: true,
    cMapUrl: new URL(CMAP_DIR, root).href,
    cMapPacked: true,
    standardFontDataUrl: new URL(STANDARD_FONT_DIR, root).href,
  };
}

/** Draws page `pageNumber` (1-based) of `data`, `width` pixels wide. */
export async function renderPage(data: Uint8Array, pageNumber: number, width: number): Promise<DrawnPage> {
  const task = getDocument({ data, ...documentOptions() });
  const doc = await task.promise;
  try {
    if (pageNumber < 1 || pageNumber > doc.numPages) {
      throw new Error(`the document has ${doc.numPages} pages, not ${pageNumber}`);
    }
    const page = await doc.getPage(pageNumber);
    const base = page.getViewport({ scale: 1 });
    const viewport = page.getViewport({ scale: width / base.width });
    const ratio = globalThis.devicePixelRatio || 1;
    const canvas = document.createElement("canvas");
    canvas.width = Math.floor(viewport.width * ratio);
    canvas.height = Math.floor(viewport.height * ratio);
    canvas.style.width = `${Math.floor(viewport.width)}px`;
    canvas.style.height = `${Math.floor(viewport.height)}px`;
    const context = canvas.getContext("2d");
    if (!context) throw new Error("no canvas to draw on");
    await page.render({
      canvas,
      canvasContext: context,
      viewport,
      transform: ratio !== 1 ? [ratio, 0, 0, ratio, 0, 0] : undefined,
    }).promise;
    const content = await page.getTextContent();
    const runs = textRuns(content.items, viewport);
    return { canvas, width: Math.floor(viewport.width), height: Math.floor(viewport.height), runs };
  } finally {
    void doc.destroy();
  }
}
