import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { fakeBackend, loadPage, resetBackend, settle } from "./setup";

beforeEach(() => {
  vi.resetModules();
  loadPage();
  localStorage.clear();
  delete document.documentElement.dataset.theme;
});

afterEach(() => {
  localStorage.clear();
  resetBackend();
});

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
    expect(loadSettings()).toEqual({ theme: "system", mode: "dense", rerank: "auto" });
    localStorage.setItem("lectern.settings", JSON.stringify({ mode: "bm25", rerank: "sometimes" }));
    expect(loadSettings()).toEqual({ theme: "system", mode: "bm25", rerank: "auto" });
    localStorage.setItem("lectern.settings", "{not json");
    expect(loadSettings()).toEqual({ theme: "system", mode: "hybrid", rerank: "auto" });
  });
});

describe("rerank setting", () => {
  const hit = {
    document: "notes.md",
    path: "/docs/notes.md",
    page: null,
    location: "",
    headings: [],
    chunkId: "d1:0",
    text: "Ownership moves the String.",
    score: 0.5,
    ranks: { dense: 1, bm25: 1 },
    bm25Score: 3,
    denseDistance: 0.2,
    rerankScore: 4.2,
  };
  const answer = {
    answer: "Not in your documents.",
    sources: [],
    promptTokens: 0,
    generatedTokens: 0,
    prefillMs: 0,
    decodeMs: 0,
    stopped: false,
    notInDocuments: true,
    tookMs: 5,
    conversation: null,
    checks: [],
    thinking: "",
  };

  function backend() {
    return fakeBackend({
      search: () => ({ hits: [hit], tookMs: 3 }),
      create_conversation: () => ({ id: "conv-1", title: "Ownership", createdAt: 1, updatedAt: 1, messages: [] }),
      list_conversations: () => [],
      ask: () => answer,
    });
  }

  async function searchFor(query: string): Promise<void> {
    (document.getElementById("search-input") as HTMLInputElement).value = query;
    (document.getElementById("search-form") as HTMLFormElement).requestSubmit();
    await settle();
  }

  async function askAbout(question: string): Promise<void> {
    const input = document.getElementById("ask-input") as HTMLTextAreaElement;
    input.value = question;
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    await settle();
  }

  const requests = (calls: ReturnType<typeof fakeBackend>, cmd: string) =>
    calls.filter((c) => c.cmd === cmd).map((c) => (c.args.request as { rerank?: string }).rerank);

  it("sits next to the retrieval mode, starts at auto and offers auto, on and off", async () => {
    const { initSettings } = await import("../src/settings");
    initSettings();
    const select = document.getElementById("settings-rerank") as HTMLSelectElement;
    expect(select.value).toBe("auto");
    expect(Array.from(select.options).map((o) => o.value)).toEqual(["auto", "on", "off"]);
    expect(document.querySelector('label[for="settings-rerank"]')?.textContent).toBe("Rerank results");
    // In the same Settings grid as the retrieval mode.
    expect(select.parentElement).toBe(document.getElementById("settings-mode")!.parentElement);
  });

  it("is sent with every search and question, follows the toggle and survives a restart", async () => {
    const calls = backend();
    const { initSettings } = await import("../src/settings");
    initSettings();
    await import("../src/search");
    await import("../src/chat");

    await searchFor("ownership");
    await askAbout("What moves a String?");
    expect(requests(calls, "search")).toEqual(["auto"]);
    expect(requests(calls, "ask")).toEqual(["auto"]);

    const select = document.getElementById("settings-rerank") as HTMLSelectElement;
    select.value = "off";
    select.dispatchEvent(new Event("change"));
    await searchFor("ownership");
    await askAbout("And a number?");
    expect(requests(calls, "search")).toEqual(["auto", "off"]);
    expect(requests(calls, "ask")).toEqual(["auto", "off"]);
    expect(JSON.parse(localStorage.getItem("lectern.settings")!)).toMatchObject({ rerank: "off" });

    // A fresh page starts from what was saved, and sends it.
    vi.resetModules();
    loadPage();
    const restarted = backend();
    const fresh = await import("../src/settings");
    expect(fresh.initSettings().rerank).toBe("off");
    expect((document.getElementById("settings-rerank") as HTMLSelectElement).value).toBe("off");
    await import("../src/search");
    await searchFor("ownership");
    expect(requests(restarted, "search")).toEqual(["off"]);

    (document.getElementById("settings-rerank") as HTMLSelectElement).value = "on";
    document.getElementById("settings-rerank")!.dispatchEvent(new Event("change"));
    await searchFor("ownership");
    expect(requests(restarted, "search")).toEqual(["off", "on"]);
  });
});
