/**
 * The cited PDF page in the source panel: the file is asked for by document
 * id, the page is drawn and the passage highlighted, and when the file is
 * gone the passage text stays with the reason. The passage search runs on
 * real pdf.js text content of a real paper.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Source } from "../src/api";
import type { DrawnPage, TextRun } from "../src/pdfview";
import { fakeBackend, loadPage, resetBackend, settle } from "./setup";

const sharedDir = process.env.LECTERN_SHARED_DIR ?? resolve(__dirname, "../../../shared");
const dprPaper = resolve(sharedDir, "eval/docs/pdf/dpr-paper-2col-tables.pdf");

/** The abstract's first sentence as Lectern's own extraction gives it: dehyphenated, its own line breaks. */
const ABSTRACT =
  "Open-domain question answering relies on efficient passage retrieval to select candidate\ncontexts, where traditional sparse vector space models, such as TF-IDF or BM25, are the de facto method.";

const source = (extra: Partial<Source> = {}): Source => ({
  n: 1,
  document: "Dense Passage Retrieval",
  path: "/docs/dpr.pdf",
  page: 1,
  location: "p. 1",
  headings: [],
  chunkId: "a1b2c3:4",
  charStart: 0,
  charEnd: ABSTRACT.length,
  text: ABSTRACT,
  score: 0.03,
  ranks: { dense: 1, bm25: 1 },
  bm25Score: 5,
  denseDistance: 0.3,
  cited: true,
  ...extra,
});

const run = (text: string, top: number): TextRun => ({ text, left: 10, top, width: 200, height: 12 });

async function pageRuns(pageNumber: number): Promise<TextRun[]> {
  const pdfjs = await import("pdfjs-dist/legacy/build/pdf.mjs");
  const doc = await pdfjs.getDocument({ data: new Uint8Array(readFileSync(dprPaper)), isEvalSupported: false, verbosity: 0 })
    .promise;
  const page = await doc.getPage(pageNumber);
  const viewport = page.getViewport({ scale: 1.5 });
  const { textRuns } = await import("../src/pdfview");
  const runs = textRuns((await page.getTextContent()).items, viewport);
  for (const r of runs) {
    expect(r.left).toBeGreaterThanOrEqual(0);
    expect(r.left).toBeLessThan(viewport.width);
    expect(r.top).toBeGreaterThan(-r.height);
    expect(r.top).toBeLessThan(viewport.height);
  }
  await doc.destroy();
  return runs;
}

beforeEach(() => {
  vi.resetModules();
  loadPage();
});

afterEach(() => resetBackend());

describe("passage search on a real page", () => {
  it("finds a cited passage across hyphenated line breaks", async () => {
    const { findPassage } = await import("../src/pdfview");
    const runs = await pageRuns(1);
    const hits = findPassage(runs, ABSTRACT).map((r) => r.text);
    expect(hits[0]).toBe("Open-domain question answering relies on ef-");
    expect(hits[hits.length - 1]).toBe("facto method.");
    expect(hits).toContain("ficient passage retrieval to select candidate");
    expect(hits).not.toContain("Abstract");
    expect(hits).not.toContain("In this work, we show that");
  }, 20_000);

  it("still places a passage whose middle was extracted differently, and finds nothing for text not on the page", async () => {
    const { findPassage } = await import("../src/pdfview");
    const runs = await pageRuns(1);
    const altered = ABSTRACT.replace("sparse vector space", "sparse-vector-spaces (sic)");
    const hits = findPassage(runs, altered).map((r) => r.text);
    expect(hits[0]).toBe("Open-domain question answering relies on ef-");
    expect(hits[hits.length - 1]).toBe("facto method.");
    expect(findPassage(runs, "Mitochondria are the powerhouse of the cell and nothing else.")).toEqual([]);
  }, 20_000);
});

describe("source panel", () => {
  const bytes = "%PDF-1.7 test";

  function drawn(runs: TextRun[]): DrawnPage {
    return { canvas: document.createElement("canvas"), width: 300, height: 400, runs };
  }

  it("asks for the file by document id, draws the cited page and highlights the passage", async () => {
    const calls = fakeBackend({ document_pdf: (a) => ({ id: a.id, fileName: "dpr.pdf", base64: btoa(bytes) }) });
    const { setPageRenderer } = await import("../src/pdfview");
    const seen: { data: string; page: number }[] = [];
    setPageRenderer(async (data, page) => {
      seen.push({ data: new TextDecoder().decode(data), page });
      return drawn([
        run("Abstract", 10),
        run("Open-domain question answering relies on ef-", 30),
        run("ficient passage retrieval to select candidate", 45),
        run("contexts, where traditional sparse vector space", 60),
        run("models, such as TF-IDF or BM25, are the de", 75),
        run("facto method.", 90),
        run("In this work, we show that", 90),
      ]);
    });
    const { showSource } = await import("../src/chat");
    showSource(source());
    await settle();
    expect(calls.filter((c) => c.cmd === "document_pdf").map((c) => c.args)).toEqual([{ id: "a1b2c3" }]);
    expect(seen).toEqual([{ data: bytes, page: 1 }]);
    const box = document.getElementById("source-pdf")!;
    expect(box.hidden).toBe(false);
    expect(box.querySelector("canvas")?.getAttribute("aria-label")).toBe("Page 1 of Dense Passage Retrieval");
    const marks = Array.from(box.querySelectorAll<HTMLElement>(".pdf-highlight"));
    expect(marks).toHaveLength(5);
    expect(marks[0].style.top).toBe("30px");
    expect(box.textContent).toContain("the cited passage is highlighted");
    expect(document.getElementById("source-pdf-note")!.hidden).toBe(true);
    expect(document.getElementById("source-passage")!.textContent).toContain("Open-domain question answering");
  });

  it("keeps the passage text and says why when the file is gone", async () => {
    const calls = fakeBackend({
      document_pdf: () => Promise.reject({ code: "not_found", message: "/docs/dpr.pdf is no longer there" }),
    });
    const { setPageRenderer } = await import("../src/pdfview");
    const render = vi.fn();
    setPageRenderer(render);
    const { showSource } = await import("../src/chat");
    showSource(source({ chunkId: "ffee00:17" }));
    await settle();
    expect(calls.find((c) => c.cmd === "document_pdf")?.args).toEqual({ id: "ffee00" });
    expect(render).not.toHaveBeenCalled();
    expect(document.getElementById("source-pdf")!.hidden).toBe(true);
    const note = document.getElementById("source-pdf-note")!;
    expect(note.hidden).toBe(false);
    expect(note.textContent).toContain("/docs/dpr.pdf is no longer there (not_found)");
    expect(note.textContent).toContain("The passage text is shown instead.");
    expect(document.getElementById("source-passage")!.textContent).toContain("efficient passage retrieval");
  });

  it("falls back to the text when the page cannot be drawn", async () => {
    fakeBackend({ document_pdf: (a) => ({ id: a.id, fileName: "dpr.pdf", base64: btoa(bytes) }) });
    const { setPageRenderer } = await import("../src/pdfview");
    setPageRenderer(() => Promise.reject(new Error("the document has 13 pages, not 40")));
    const { showSource } = await import("../src/chat");
    showSource(source({ page: 40 }));
    await settle();
    const note = document.getElementById("source-pdf-note")!;
    expect(note.hidden).toBe(false);
    expect(note.textContent).toContain("Page 40 could not be drawn: the document has 13 pages, not 40");
  });

  it("asks for no file when the source is not a PDF page", async () => {
    const calls = fakeBackend({});
    const { showSource } = await import("../src/chat");
    showSource(source({ path: "/docs/notes.md", page: null, location: "" }));
    await settle();
    expect(calls.some((c) => c.cmd === "document_pdf")).toBe(false);
    expect(document.getElementById("source-pdf")!.hidden).toBe(true);
    expect(document.getElementById("source-pdf-note")!.hidden).toBe(true);
  });
});
