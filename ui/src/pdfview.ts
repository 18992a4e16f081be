/**
 * The cited PDF page in the source panel: the document's file comes from
 * the backend by document id, pdf.js draws the page (loaded on first use,
 * its worker bundled with the app) and the cited passage is highlighted
 * where the page's text matches it. When the file is gone or cannot be
 * drawn, the panel keeps the passage text and says why.
 */
import { asCommandError, documentPdf, type Source } from "./api";
import { byId, h } from "./dom";
import { bus, errorText, LIBRARY_CHANGED } from "./shell";

/** A run of text on the page, in page-view pixels. */
export interface TextRun {
  text: string;
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Multiplies two affine transforms `[a, b, c, d, e, f]`. */
function multiply(m: number[], n: number[]): number[] {
  return [
    m[0] * n[0] + m[2] * n[1],
    m[1] * n[0] + m[3] * n[1],
    m[0] * n[2] + m[2] * n[3],
    m[1] * n[2] + m[3] * n[3],
    m[0] * n[4] + m[2] * n[5] + m[4],
    m[1] * n[4] + m[3] * n[5] + m[5],
  ];
}

/**
 * The text runs of a page's text content (pdf.js `getTextContent().items`)
 * placed in the pixels of `viewport`. Marked-content entries and blank runs
 * are left out.
 */
export function textRuns(items: readonly unknown[], viewport: { transform: number[]; scale: number }): TextRun[] {
  const runs: TextRun[] = [];
  for (const raw of items) {
    const item = raw as { str?: unknown; transform?: unknown; width?: unknown };
    if (typeof item.str !== "string" || !item.str.trim() || !Array.isArray(item.transform)) continue;
    const tx = multiply(viewport.transform, item.transform as number[]);
    const height = Math.hypot(tx[2], tx[3]);
    runs.push({
      text: item.str,
      left: tx[4],
      top: tx[5] - height,
      width: (typeof item.width === "number" ? item.width : 0) * viewport.scale,
      height: height * 1.2,
    });
  }
  return runs;
}

/** What the renderer needs to know of a drawn page. */
export interface DrawnPage {
  canvas: HTMLCanvasElement;
  width: number;
  height: number;
  runs: TextRun[];
}

/** Draws one page of a PDF; pdf.js in the app, a stand-in in tests. */
export type PageRenderer = (data: Uint8Array, page: number, width: number) => Promise<DrawnPage>;

const box = byId("source-pdf");
const note = byId("source-pdf-note");

/** The document id of a chunk id (`<document id>:<ordinal>`). */
export function documentIdOf(chunkId: string): string {
  const at = chunkId.lastIndexOf(":");
  return at > 0 ? chunkId.slice(0, at) : chunkId;
}

export function isPdfSource(s: Source): boolean {
  return s.page !== null && s.path !== null && /\.pdf$/i.test(s.path);
}

/** Letters and digits only, lower case: line breaks, hyphenation and punctuation differ between extractors. */
function normalise(text: string): string {
  return text.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, "");
}

/**
 * The runs that hold `passage`: the page's text (letters and digits only,
 * so line breaks, hyphenation and punctuation do not matter) is searched
 * for the passage, or failing that for its opening and closing stretches,
 * and every run overlapping the match is returned in page order. Empty
 * when nothing matches.
 */
export function findPassage(runs: TextRun[], passage: string): TextRun[] {
  const starts: number[] = [];
  const lengths: number[] = [];
  let page = "";
  for (const run of runs) {
    const t = normalise(run.text);
    starts.push(page.length);
    lengths.push(t.length);
    page += t;
  }
  const want = normalise(passage);
  if (!want || !page) return [];
  let from = page.indexOf(want);
  let to = from + want.length;
  if (from < 0) {
    // Shrink the probes until they match: extraction may differ inside.
    const longest = Math.min(60, want.length);
    let head = -1;
    let tail = -1;
    for (let n = longest; n >= 12 && head < 0; n -= 4) head = page.indexOf(want.slice(0, n));
    for (let n = longest; n >= 12 && tail < 0; n -= 4) {
      const probe = want.slice(-n);
      const at = page.indexOf(probe, Math.max(0, head));
      if (at >= 0) tail = at + probe.length;
    }
    if (head < 0 && tail < 0) return [];
    from = head >= 0 ? head : Math.max(0, tail - want.length);
    to = tail >= 0 ? tail : Math.min(page.length, head + want.length);
  }
  return runs.filter((_, i) => lengths[i] > 0 && starts[i] + lengths[i] > from && starts[i] < to);
}

let renderer: PageRenderer | null = null;

/** Replaces pdf.js (tests run without a canvas). */
export function setPageRenderer(r: PageRenderer | null): void {
  renderer = r;
}

async function pageRenderer(): Promise<PageRenderer> {
  if (!renderer) renderer = (await import("./pdfrender")).renderPage;
  return renderer;
}

let current = 0;

/** The last file fetched: citations of one answer are mostly in one document. */
let cached: { id: string; bytes: Uint8Array } | null = null;

bus.addEventListener(LIBRARY_CHANGED, () => (cached = null));

async function fileOf(id: string): Promise<Uint8Array> {
  if (cached?.id !== id) cached = { id, bytes: await documentPdf(id) };
  // pdf.js takes over the buffer it is given; keep the cached one intact.
  return cached.bytes.slice();
}

/** Hides the page view (a new source is being shown). */
export function clearPdf(): void {
  current += 1;
  box.replaceChildren();
  box.hidden = true;
  note.hidden = true;
  note.textContent = "";
}

/**
 * Shows the cited page of a PDF source with the passage highlighted; the
 * passage text stays below as the fallback.
 */
export async function showPdfPage(s: Source): Promise<void> {
  clearPdf();
  if (!isPdfSource(s) || s.page === null) return;
  const ticket = current;
  const page = s.page;
  box.hidden = false;
  box.setAttribute("aria-busy", "true");
  box.replaceChildren(h("p", { class: "muted small-text", text: `Loading page ${page}…` }));
  const fail = (why: string) => {
    if (ticket !== current) return;
    box.replaceChildren();
    box.hidden = true;
    box.removeAttribute("aria-busy");
    note.textContent = `${why} The passage text is shown instead.`;
    note.hidden = false;
  };
  let data: Uint8Array;
  try {
    data = await fileOf(documentIdOf(s.chunkId));
  } catch (err) {
    fail(`The PDF is not available: ${errorText(asCommandError(err))}.`);
    return;
  }
  if (ticket !== current) return;
  let drawn: DrawnPage;
  try {
    const render = await pageRenderer();
    drawn = await render(data, page, Math.max(240, box.clientWidth || 312));
  } catch (err) {
    fail(`Page ${page} could not be drawn: ${err instanceof Error ? err.message : String(err)}.`);
    return;
  }
  if (ticket !== current) return;
  const hits = findPassage(drawn.runs, s.text);
  const layer = h("div", { class: "pdf-highlights", attrs: { "aria-hidden": "true" } });
  for (const run of hits) {
    const mark = h("div", { class: "pdf-highlight" });
    mark.style.left = `${run.left}px`;
    mark.style.top = `${run.top}px`;
    mark.style.width = `${run.width}px`;
    mark.style.height = `${run.height}px`;
    layer.appendChild(mark);
  }
  const sheet = h("div", { class: "pdf-sheet" }, drawn.canvas, layer);
  sheet.style.width = `${drawn.width}px`;
  sheet.style.height = `${drawn.height}px`;
  drawn.canvas.setAttribute("role", "img");
  drawn.canvas.setAttribute("aria-label", `Page ${page} of ${s.document}`);
  box.removeAttribute("aria-busy");
  box.replaceChildren(
    sheet,
    h("p", {
      class: "muted small-text",
      text: hits.length ? `Page ${page} · the cited passage is highlighted` : `Page ${page} · the passage could not be located on the page`,
    }),
  );
  box.dataset.highlights = String(hits.length);
  const first = layer.firstElementChild as HTMLElement | null;
  first?.scrollIntoView?.({ block: "center" });
}
