/**
 * The model catalog against a fake backend: what fits this machine is
 * shown, a download streams its progress and ends verified, and a cancel
 * says what was kept.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { CatalogModelView, CatalogView } from "../src/api";
import { fakeBackend, loadPage, resetBackend, send, settle } from "./setup";

const model = (id: string, extra: Partial<CatalogModelView> = {}): CatalogModelView => ({
  id,
  kind: "llm",
  repo: `Qwen/${id}`,
  sizeBytes: 1000,
  state: "absent",
  missing: [],
  downloadable: true,
  license: "apache-2.0",
  fits: true,
  recommended: false,
  maxContext: 32768,
  note: "",
  ...extra,
});

const catalog = (models: CatalogModelView[]): CatalogView => ({
  models,
  recommendation: "qwen3-1.7b fits in 24 GiB of memory",
  plannedContext: 8192,
  modelsDir: "/models",
});

function rowOf(id: string): HTMLTableRowElement {
  const row = document.querySelector<HTMLTableRowElement>(`#catalog-body tr[data-id="${id}"]`);
  if (!row) throw new Error(`no row for ${id}`);
  return row;
}

beforeEach(() => {
  vi.resetModules();
  loadPage();
});

afterEach(() => resetBackend());

describe("model catalog", () => {
  it("shows sizes, what fits and what is installed", async () => {
    fakeBackend({
      model_catalog: () =>
        catalog([
          model("qwen3-8b", { fits: false, note: "needs 17 GiB", sizeBytes: 16 * 2 ** 30 }),
          model("qwen3-1.7b", { recommended: true }),
          model("all-minilm-l6-v2", { kind: "embedder", fits: null, maxContext: null, state: "installed" }),
        ]),
    });
    const { refreshCatalog } = await import("../src/catalog");
    await refreshCatalog();
    expect(document.getElementById("catalog-summary")?.textContent).toContain("qwen3-1.7b fits in 24 GiB");
    expect(rowOf("qwen3-8b").textContent).toContain("Too large here");
    expect(rowOf("qwen3-8b").textContent).toContain("16 GB");
    expect(rowOf("qwen3-1.7b").textContent).toContain("Recommended here");
    const installed = rowOf("all-minilm-l6-v2");
    expect(installed.textContent).toContain("Installed");
    expect(installed.querySelector<HTMLButtonElement>("button")?.hidden).toBe(true);
  });

  it("downloads with progress and refreshes to installed", async () => {
    let state = "absent";
    let finish: (() => void) | null = null;
    let channel: unknown = null;
    const calls = fakeBackend({
      model_catalog: () => catalog([model("qwen3-0.6b", { state })]),
      download_model: (args) => {
        channel = args.onEvent;
        return new Promise((resolve) => {
          finish = () => {
            state = "installed";
            resolve("/models/qwen3-0.6b");
          };
        });
      },
    });
    const { refreshCatalog } = await import("../src/catalog");
    await refreshCatalog();
    const button = rowOf("qwen3-0.6b").querySelector<HTMLButtonElement>("button")!;
    expect(button.textContent).toBe("Download");
    button.click();
    await settle();
    expect(calls.find((c) => c.cmd === "download_model")?.args.id).toBe("qwen3-0.6b");
    expect(button.textContent).toBe("Cancel");
    send(channel, { kind: "fileStarted", file: "model.safetensors", size: 800 });
    send(channel, { kind: "progress", file: "model.safetensors", done: 400, size: 800 });
    const progress = rowOf("qwen3-0.6b").querySelector<HTMLProgressElement>("progress")!;
    expect(progress.value).toBeCloseTo(0.4);
    send(channel, { kind: "fileVerified", file: "model.safetensors", digestChecked: true });
    send(channel, { kind: "fileStarted", file: "tokenizer.json", size: 200 });
    send(channel, { kind: "progress", file: "tokenizer.json", done: 100, size: 200 });
    expect(progress.value).toBeCloseTo(0.9);
    finish!();
    await settle();
    expect(document.getElementById("catalog-result")?.textContent).toBe("qwen3-0.6b is installed and verified.");
    expect(rowOf("qwen3-0.6b").dataset.state).toBe("installed");
  });

  it("cancels a download and says verified files are kept", async () => {
    let fail: (() => void) | null = null;
    const calls = fakeBackend({
      model_catalog: () => catalog([model("qwen3-4b")]),
      download_model: () => new Promise((_, reject) => (fail = () => reject({ code: "cancelled", message: "cancelled" }))),
      cancel_download: () => {
        fail!();
        return true;
      },
    });
    const { refreshCatalog } = await import("../src/catalog");
    await refreshCatalog();
    const button = rowOf("qwen3-4b").querySelector<HTMLButtonElement>("button")!;
    button.click();
    await settle();
    button.click();
    await settle();
    expect(calls.some((c) => c.cmd === "cancel_download")).toBe(true);
    expect(document.getElementById("catalog-result")?.textContent).toBe(
      "The download of qwen3-4b was cancelled; verified files are kept for next time.",
    );
  });
});
