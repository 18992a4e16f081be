/**
 * A fresh install with no embedding model: the app says what is missing and
 * leads to the Models screen, and once a model is downloaded the library
 * opens without a restart.
 */
import { mockWindows } from "@tauri-apps/api/mocks";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { CatalogView } from "../src/api";
import { fakeBackend, loadPage, resetBackend, settle } from "./setup";

const catalog: CatalogView = {
  models: [
    {
      id: "all-MiniLM-L6-v2",
      kind: "embedder",
      repo: "sentence-transformers/all-MiniLM-L6-v2",
      sizeBytes: 90_000_000,
      state: "absent",
      missing: ["model.safetensors"],
      downloadable: true,
      license: "apache-2.0",
      fits: null,
      recommended: false,
      maxContext: null,
      note: "",
    },
  ],
  recommendation: "qwen3-1.7b fits in 24 GiB of memory",
  plannedContext: 8192,
  modelsDir: "/models",
};

beforeEach(() => {
  vi.resetModules();
  loadPage();
});

afterEach(() => resetBackend());

describe("first run without an embedding model", () => {
  it("points to the Models screen and clears once a model is installed", async () => {
    let installed = false;
    const calls = fakeBackend({
      library_stats: () =>
        installed
          ? { documents: 0, chunks: 0 }
          : Promise.reject({
              code: "no_embedder",
              message: "no embedding model is installed (looked in /models/all-MiniLM-L6-v2)",
              retryable: true,
            }),
      model_catalog: () => catalog,
      download_model: () => {
        installed = true;
        return "/models/all-MiniLM-L6-v2";
      },
    }, { events: true });
    mockWindows("main");
    await import("../src/main");
    await settle();

    const notice = document.getElementById("notice")!;
    expect(notice.hidden).toBe(false);
    expect(notice.textContent).toContain("needs an embedding model");
    expect(notice.textContent).not.toContain("could not open");
    expect(document.getElementById("topbar-stats")?.textContent).toBe("No embedding model");

    const action = notice.querySelector<HTMLButtonElement>("button.notice-action")!;
    expect(action.textContent).toBe("Get one in Models & GPU");
    action.click();
    await settle();
    expect(document.getElementById("screen-models")?.hidden).toBe(false);
    expect(document.getElementById("screen-chat")?.hidden).toBe(true);

    const download = document.querySelector<HTMLButtonElement>('#catalog-body tr[data-id="all-MiniLM-L6-v2"] button')!;
    const statsBefore = calls.filter((c) => c.cmd === "library_stats").length;
    download.click();
    await settle();
    // The finished download makes the app look at the library again.
    expect(calls.filter((c) => c.cmd === "library_stats").length).toBeGreaterThan(statsBefore);
    expect(notice.hidden).toBe(true);
    expect(document.getElementById("topbar-stats")?.textContent).toBe("0 documents · 0 chunks");
  });

  it("keeps the plain error for a library that is broken rather than empty", async () => {
    fakeBackend({
      library_stats: () => Promise.reject({ code: "index", message: "table is corrupt", retryable: true }),
    }, { events: true });
    mockWindows("main");
    await import("../src/main");
    await settle();
    const notice = document.getElementById("notice")!;
    expect(notice.textContent).toBe("The library could not open: table is corrupt (index)");
    expect(notice.querySelector("button")).toBeNull();
  });
});
