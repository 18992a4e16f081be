/**
 * Watched folders on the library screen: the folders kept in step with the
 * library, each with its sync state; add one with the folder picker, remove
 * one (its documents stay). States arrive as `folder-status` events.
 */
import { open } from "@tauri-apps/plugin-dialog";
import {
  addWatchedFolder,
  asCommandError,
  onFolderStatus,
  removeWatchedFolder,
  watchedFolders,
  type FolderStatus,
} from "./api";
import { byId, fileName, h } from "./dom";
import { errorText, formatWhen, libraryChanged, plural } from "./shell";

const list = byId("watched-list");
const empty = byId("watched-empty");
const result = byId("watched-result");
const addButton = byId<HTMLButtonElement>("watched-add");

let folders: FolderStatus[] = [];

const stateText: Record<string, string> = {
  starting: "Starting",
  syncing: "Syncing",
  watching: "Watching",
  error: "Error",
  stopped: "Stopped",
};

const stateBadge: Record<string, string> = {
  starting: "badge",
  syncing: "badge badge-warn",
  watching: "badge badge-ok",
  error: "badge badge-bad",
  stopped: "badge",
};

function detail(f: FolderStatus): string {
  if (f.state === "syncing" || f.state === "starting") return f.message ?? "Comparing the folder with the library…";
  const parts: string[] = [];
  if (f.syncedAt !== null) {
    parts.push(`Synced ${formatWhen(f.syncedAt)}`);
    if (f.indexed) parts.push(`${plural(f.indexed, "file", "files")} indexed`);
    if (f.removed) parts.push(`${plural(f.removed, "document", "documents")} removed`);
    if (f.failed) parts.push(`${plural(f.failed, "file", "files")} failed`);
  }
  if (f.message) parts.push(f.message);
  return parts.join(" · ");
}

function row(f: FolderStatus): HTMLLIElement {
  const remove = h("button", {
    class: "link small",
    text: "Remove",
    title: "Stop watching this folder (its documents stay in the library)",
    attrs: { type: "button", "aria-label": `Stop watching ${f.path}` },
  });
  remove.addEventListener("click", () => void removeFolder(f.path));
  return h(
    "li",
    { class: "watched-row", attrs: { "data-path": f.path, "data-state": f.state } },
    h(
      "div",
      { class: "watched-line" },
      h("span", { class: "watched-name", text: fileName(f.path), title: f.path }),
      h("span", { class: `watched-state ${stateBadge[f.state] ?? "badge"}`, text: stateText[f.state] ?? f.state }),
      remove,
    ),
    h("p", { class: "doc-path muted small-text", text: f.path, title: f.path }),
    h("p", { class: f.state === "error" ? "watched-detail error small-text" : "watched-detail muted small-text", text: detail(f) }),
  );
}

function render(): void {
  list.replaceChildren(...folders.map(row));
  empty.hidden = folders.length > 0;
}

function say(text: string, error = false): void {
  result.textContent = text;
  result.classList.toggle("error", error);
  result.hidden = !text;
}

/** Follows one folder's new state. */
export function folderChanged(status: FolderStatus): void {
  const i = folders.findIndex((f) => f.path === status.path);
  if (i < 0) return;
  const before = folders[i];
  folders[i] = status;
  render();
  // A finished sync that changed the library refreshes the documents.
  if (status.syncedAt !== null && status.syncedAt !== before.syncedAt && (status.indexed || status.removed)) {
    libraryChanged();
  }
}

export async function refreshFolders(): Promise<void> {
  try {
    folders = await watchedFolders();
    render();
  } catch (err) {
    say(`Watched folders unavailable: ${errorText(asCommandError(err))}`, true);
  }
}

async function addFolder(): Promise<void> {
  let picked: string | string[] | null;
  try {
    picked = await open({ directory: true, multiple: false, title: "Watch a folder" });
  } catch (err) {
    say(`The folder picker failed: ${errorText(asCommandError(err))}`, true);
    return;
  }
  const path = Array.isArray(picked) ? picked[0] : picked;
  if (!path) return;
  addButton.disabled = true;
  try {
    folders = await addWatchedFolder(path);
    render();
    say(`Watching ${fileName(path)}: new, changed and deleted files are picked up.`);
  } catch (err) {
    say(`Could not watch ${path}: ${errorText(asCommandError(err))}`, true);
  } finally {
    addButton.disabled = false;
  }
}

async function removeFolder(path: string): Promise<void> {
  try {
    folders = await removeWatchedFolder(path);
    render();
    say(`Stopped watching ${fileName(path)}; its documents stay in the library.`);
  } catch (err) {
    say(`Could not stop watching ${path}: ${errorText(asCommandError(err))}`, true);
  }
}

addButton.addEventListener("click", () => void addFolder());

let listening = false;

/** Follows folder states and loads the list. */
export async function startFolders(): Promise<void> {
  if (!listening) {
    listening = true;
    await onFolderStatus(folderChanged).catch(() => undefined);
  }
  await refreshFolders();
}
