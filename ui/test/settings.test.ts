import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { loadPage } from "./setup";

beforeEach(() => {
  vi.resetModules();
  loadPage();
  localStorage.clear();
  delete document.documentElement.dataset.theme;
});

afterEach(() => localStorage.clear());

describe("settings", () => {
  it("applies and remembers the theme and the retrieval mode", async () => {
    const { initSettings } = await import("../src/settings");
    initSettings();
    expect(document.documentElement.dataset.theme).toBeUndefined();
    const theme = document.getElementById("settings-theme") as HTMLSelectElement;
    const mode = document.getElementById("settings-mode") as HTMLSelectElement;
    theme.value = "dark";
    theme.dispatchEvent(new Event("change"));
    mode.value = "bm25";
    mode.dispatchEvent(new Event("change"));
    expect(document.documentElement.dataset.theme).toBe("dark");
    expect((document.getElementById("ask-mode") as HTMLSelectElement).value).toBe("bm25");
    expect((document.getElementById("search-mode") as HTMLSelectElement).value).toBe("bm25");

    // A fresh page starts from what was saved.
    loadPage();
    delete document.documentElement.dataset.theme;
    initSettings();
    expect(document.documentElement.dataset.theme).toBe("dark");
    expect((document.getElementById("settings-mode") as HTMLSelectElement).value).toBe("bm25");
    expect((document.getElementById("ask-mode") as HTMLSelectElement).value).toBe("bm25");
  });

  it("ignores stored values it does not know", async () => {
    const { loadSettings } = await import("../src/settings");
    localStorage.setItem("lectern.settings", JSON.stringify({ theme: "sepia", mode: "dense" }));
    expect(loadSettings()).toEqual({ theme: "system", mode: "dense" });
    localStorage.setItem("lectern.settings", "{not json");
    expect(loadSettings()).toEqual({ theme: "system", mode: "hybrid" });
  });
});
