/**
 * The library screen against a fake backend: ingestion events become rows
 * with their final state, a failure names its reason and does not stop the
 * rest, and the documents table filters and really calls delete.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { DocumentInfo, IngestSummary } from "../src/api";
import { fakeBackend, loadPage, resetBackend, send, settle } from "./setup";

const doc = (id: string, title: string, format: string, extra: Partial<DocumentInfo> = {}): DocumentInfo => ({
  id,
  title,
  path: `/docs/${title}`,
  fileName: title,
  format,
  pages: 3,
  chunks: 12,
  bytes: 2048,
  indexedAt: Math.floor(Date.now() / 1000),
  warnings: [],
  needsOcr: false,
  ...extra,
});

const summary = (extra: Partial<IngestSummary> = {}): IngestSummary => ({
  indexed: 2,
  unchanged: 0,
  skipped: 0,
  failed: 1,
  chunks: 30,
  seconds: 4.2,
  cancelled: false,
  ...extra,
});

function rowState(name: string): { state: string | undefined; status: string | null | undefined } {
  const row = Array.from(document.querySelectorAll<HTMLLIElement>("#ingest-list .ingest-row")).find(
    (li) => li.querySelector(".ingest-name")?.textContent === name,
  );
  return { state: row?.dataset.state, status: row?.querySelector(".ingest-status")?.textContent };
}

beforeEach(() => {
  vi.resetModules();
  loadPage();
});

afterEach(() => resetBackend());

describe("library", () => {
  it("shows each dropped file's progress and outcome", async () => {
    let finish: (() => void) | null = null;
    let channel: unknown = null;
    const calls = fakeBackend({
      documents: () => [],
      ingest: (args) => {
        channel = args.onEvent;
        return new Promise((resolve) => (finish = () => resolve(summary())));
      },
    });
    const library = await import("../src/library");
    const run = library.startIngest(["/docs/a.pdf", "/docs/b.md", "/docs/broken.pdf", "/docs/a.pdf"]);
    await settle();
    expect(calls.find((c) => c.cmd === "ingest")?.args.paths).toEqual(["/docs/a.pdf", "/docs/b.md", "/docs/broken.pdf"]);
    expect(document.getElementById("ingest-overall")?.hidden).toBe(false);

    send(channel, { kind: "discovered", files: 3 });
    send(channel, { kind: "started", path: "/docs/a.pdf", name: "a.pdf", index: 0, total: 3 });
    send(channel, { kind: "progress", path: "/docs/a.pdf", stage: "Embedding", done: 5, total: 10 });
    expect(rowState("a.pdf")).toEqual({ state: "working", status: "Embedding 5/10" });
    send(channel, { kind: "indexed", path: "/docs/a.pdf", pages: 4, chunks: 10, warnings: [], needsOcr: false });
    send(channel, { kind: "started", path: "/docs/broken.pdf", name: "broken.pdf", index: 1, total: 3 });
    send(channel, { kind: "failed", path: "/docs/broken.pdf", reason: "not a PDF: no header" });
    send(channel, { kind: "started", path: "/docs/b.md", name: "b.md", index: 2, total: 3 });
    send(channel, { kind: "indexed", path: "/docs/b.md", pages: null, chunks: 20, warnings: ["page 2 needs OCR"], needsOcr: true });

    expect(rowState("a.pdf")).toEqual({ state: "indexed", status: "Indexed · 4 pages · 10 chunks" });
    expect(rowState("broken.pdf")).toEqual({ state: "failed", status: "Failed: not a PDF: no header" });
    expect(rowState("b.md")).toEqual({ state: "warning", status: "Indexed · 20 chunks · some pages need OCR" });
    expect((document.getElementById("ingest-progress") as HTMLProgressElement).value).toBe(1);

    finish!();
    await run;
    expect(document.getElementById("ingest-overall")?.hidden).toBe(true);
    expect(document.getElementById("ingest-result")?.textContent).toBe("Added 2 documents · 1 failed · 30 chunks in 4.2 s");
  });

  it("marks files still queued when the run is cancelled", async () => {
    let channel: unknown = null;
    let finish: (() => void) | null = null;
    fakeBackend({
      documents: () => [],
      cancel_ingest: () => {
        finish!();
        return true;
      },
      ingest: (args) => {
        channel = args.onEvent;
        return new Promise((resolve) => (finish = () => resolve(summary({ indexed: 1, failed: 0, cancelled: true }))));
      },
    });
    const library = await import("../src/library");
    const run = library.startIngest(["/docs/a.md", "/docs/b.md"]);
    await settle();
    send(channel, { kind: "queued", path: "/docs/b.md", name: "b.md", folder: false });
    send(channel, { kind: "indexed", path: "/docs/a.md", pages: null, chunks: 3, warnings: [], needsOcr: false });
    (document.getElementById("ingest-cancel") as HTMLButtonElement).click();
    await run;
    expect(rowState("b.md")).toEqual({ state: "cancelled", status: "Cancelled · not indexed" });
    expect(document.getElementById("ingest-result")?.textContent).toMatch(/^Cancelled · added 1 document/);
  });

  it("filters the documents table and deletes after a confirmation", async () => {
    let docs = [doc("d1", "report.pdf", "pdf"), doc("d2", "notes.md", "markdown", { needsOcr: true, warnings: ["p. 2 needs OCR"] })];
    const calls = fakeBackend({
      documents: () => docs,
      delete_document: (args) => {
        docs = docs.filter((d) => d.id !== args.id);
        return true;
      },
    });
    const library = await import("../src/library");
    await library.refreshDocuments();
    const rows = () => Array.from(document.querySelectorAll<HTMLTableRowElement>("#documents-body tr"));
    expect(rows().map((r) => r.dataset.id)).toEqual(["d1", "d2"]);
    expect(rows()[1].textContent).toContain("Needs OCR");

    const filter = document.getElementById("library-filter") as HTMLInputElement;
    filter.value = "notes";
    filter.dispatchEvent(new Event("input"));
    expect(rows().map((r) => r.dataset.id)).toEqual(["d2"]);
    filter.value = "";
    filter.dispatchEvent(new Event("input"));

    const remove = Array.from(rows()[0].querySelectorAll("button")).find((b) => b.textContent === "Delete")!;
    remove.click();
    await settle();
    expect(calls.some((c) => c.cmd === "delete_document")).toBe(false);
    expect(remove.textContent).toBe("Really delete?");
    remove.click();
    await settle();
    expect(calls.find((c) => c.cmd === "delete_document")?.args).toEqual({ id: "d1" });
    expect(rows().map((r) => r.dataset.id)).toEqual(["d2"]);
  });
});
