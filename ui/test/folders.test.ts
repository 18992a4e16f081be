/**
 * Watched folders on the library screen against a fake backend: the list
 * with each folder's state, adding one through the folder picker, removing
 * one, live `folder-status` events, and errors said plainly.
 */
import { emit } from "@tauri-apps/api/event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { FolderStatus } from "../src/api";
import { fakeBackend, loadPage, resetBackend, settle } from "./setup";

const folder = (path: string, extra: Partial<FolderStatus> = {}): FolderStatus => ({
  path,
  state: "watching",
  message: null,
  indexed: 0,
  removed: 0,
  failed: 0,
  syncedAt: Math.floor(Date.now() / 1000) - 5,
  ...extra,
});

function rows(): { path: string; state: string; badge: string; detail: string }[] {
  return Array.from(document.querySelectorAll<HTMLLIElement>("#watched-list .watched-row")).map((li) => ({
    path: li.dataset.path ?? "",
    state: li.dataset.state ?? "",
    badge: li.querySelector(".watched-state")?.textContent ?? "",
    detail: li.querySelector(".watched-detail")?.textContent ?? "",
  }));
}

beforeEach(() => {
  vi.resetModules();
  loadPage();
});

afterEach(() => resetBackend());

describe("watched folders", () => {
  it("lists the folders with their sync state", async () => {
    fakeBackend(
      {
        watched_folders: () => [
          folder("/home/me/papers", { indexed: 3, failed: 1, message: "bad.pdf: encrypted" }),
          folder("/home/me/gone", { state: "error", message: "cannot open folder /home/me/gone", syncedAt: null }),
        ],
      },
      { events: true },
    );
    const { startFolders } = await import("../src/folders");
    await startFolders();
    const list = rows();
    expect(list.map((r) => r.badge)).toEqual(["Watching", "Error"]);
    expect(list[0].detail).toContain("Synced just now");
    expect(list[0].detail).toContain("3 files indexed");
    expect(list[0].detail).toContain("1 file failed");
    expect(list[0].detail).toContain("bad.pdf: encrypted");
    expect(list[1].detail).toContain("cannot open folder");
    expect(document.getElementById("watched-empty")!.hidden).toBe(true);
  });

  it("adds a folder picked in the folder dialog", async () => {
    const calls = fakeBackend(
      {
        watched_folders: () => [],
        "plugin:dialog|open": () => "/home/me/notes",
        add_watched_folder: (args) => [folder(String(args.path), { state: "starting", syncedAt: null })],
      },
      { events: true },
    );
    const { startFolders } = await import("../src/folders");
    await startFolders();
    expect(document.getElementById("watched-empty")!.hidden).toBe(false);
    (document.getElementById("watched-add") as HTMLButtonElement).click();
    await settle();
    const dialog = calls.find((c) => c.cmd === "plugin:dialog|open");
    expect((dialog?.args.options as { directory?: boolean }).directory).toBe(true);
    const add = calls.find((c) => c.cmd === "add_watched_folder");
    expect(add?.args.path).toBe("/home/me/notes");
    expect(rows()).toEqual([
      { path: "/home/me/notes", state: "starting", badge: "Starting", detail: "Comparing the folder with the library…" },
    ]);
    expect(document.getElementById("watched-result")!.textContent).toContain("Watching notes");

    // The watch reports progress, then the finished sync.
    await emit("folder-status", folder("/home/me/notes", { state: "syncing", message: "Reading a.md", syncedAt: null }));
    await settle();
    expect(rows()[0]).toMatchObject({ badge: "Syncing", detail: "Reading a.md" });
    await emit("folder-status", folder("/home/me/notes", { indexed: 2 }));
    await settle();
    expect(rows()[0]).toMatchObject({ badge: "Watching" });
    expect(rows()[0].detail).toContain("2 files indexed");
  });

  it("does nothing when the dialog is cancelled", async () => {
    const calls = fakeBackend({ watched_folders: () => [], "plugin:dialog|open": () => null }, { events: true });
    const { startFolders } = await import("../src/folders");
    await startFolders();
    (document.getElementById("watched-add") as HTMLButtonElement).click();
    await settle();
    expect(calls.some((c) => c.cmd === "add_watched_folder")).toBe(false);
  });

  it("removes a folder and says its documents stay", async () => {
    const calls = fakeBackend(
      {
        watched_folders: () => [folder("/a/one"), folder("/a/two")],
        remove_watched_folder: () => [folder("/a/two")],
      },
      { events: true },
    );
    const { startFolders } = await import("../src/folders");
    await startFolders();
    const remove = document.querySelector<HTMLButtonElement>('#watched-list .watched-row[data-path="/a/one"] button')!;
    remove.click();
    await settle();
    expect(calls.find((c) => c.cmd === "remove_watched_folder")?.args.path).toBe("/a/one");
    expect(rows().map((r) => r.path)).toEqual(["/a/two"]);
    expect(document.getElementById("watched-result")!.textContent).toContain("documents stay in the library");
  });

  it("shows a refused folder's reason", async () => {
    fakeBackend(
      {
        watched_folders: () => [],
        "plugin:dialog|open": () => "/etc/shadow",
        add_watched_folder: () => Promise.reject({ code: "invalid_input", message: "/etc/shadow is not a folder" }),
      },
      { events: true },
    );
    const { startFolders } = await import("../src/folders");
    await startFolders();
    (document.getElementById("watched-add") as HTMLButtonElement).click();
    await settle();
    const result = document.getElementById("watched-result")!;
    expect(result.textContent).toContain("is not a folder (invalid_input)");
    expect(result.classList.contains("error")).toBe(true);
    expect(rows()).toEqual([]);
  });
});
