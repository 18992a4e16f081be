/**
 * The library screen: the documents table (filter, delete, re-index),
 * collections (filter the table by one; create, rename, delete; add or
 * remove the selected documents) and ingestion (drop zone over the whole
 * window, per-file rows, overall progress with an estimate, cancel).
 */
import { getCurrentWebview } from "@tauri-apps/api/webview";
import {
  addToCollection,
  asCommandError,
  cancelIngest,
  createCollection,
  deleteCollection,
  deleteDocument,
  documents,
  inApp,
  ingest,
  listCollections,
  reindexDocument,
  removeFromCollection,
  renameCollection,
  type Collection,
  type DocumentInfo,
  type IngestEvent,
  type IngestSummary,
} from "./api";
import { byId, fileName, formatCount, h } from "./dom";
import { errorText, formatBytes, formatDuration, formatWhen, libraryChanged, plural, showNotice } from "./shell";

const MAX_INGEST_ROWS = 200;

// ---------------------------------------------------------------- ingest rows

type RowState = "queued" | "working" | "indexed" | "unchanged" | "warning" | "skipped" | "failed" | "cancelled";

interface IngestRow {
  li: HTMLLIElement;
  status: HTMLSpanElement;
  note: HTMLSpanElement;
  bar: HTMLProgressElement;
  state: RowState;
}

const ingestList = byId<HTMLUListElement>("ingest-list");
const overall = byId("ingest-overall");
const overallText = byId("ingest-batch");
const overallBar = byId<HTMLProgressElement>("ingest-progress");
const overallEta = byId("ingest-eta");
const cancelButton = byId<HTMLButtonElement>("ingest-cancel");
const resultLine = byId("ingest-result");
const rows = new Map<string, IngestRow>();

function rowFor(path: string, name = fileName(path)): IngestRow {
  let row = rows.get(path);
  if (row) return row;
  const status = h("span", { class: "ingest-status" });
  const note = h("span", { class: "ingest-note" });
  note.hidden = true;
  const bar = h("progress", { class: "ingest-bar", attrs: { max: "1" } });
  const li = h(
    "li",
    { class: "ingest-row", attrs: { "data-state": "queued" } },
    h("span", { class: "ingest-name", text: name, title: path }),
    status,
    note,
    bar,
  );
  ingestList.prepend(li);
  row = { li, status, note, bar, state: "queued" };
  rows.set(path, row);
  while (ingestList.children.length > MAX_INGEST_ROWS) {
    const last = ingestList.lastElementChild;
    if (!last) break;
    for (const [key, value] of rows) if (value.li === last) rows.delete(key);
    last.remove();
  }
  return row;
}

function setRow(row: IngestRow, state: RowState, text: string, progress?: number | null): void {
  row.state = state;
  row.li.dataset.state = state;
  row.status.textContent = text;
  const busy = state === "queued" || state === "working";
  row.bar.hidden = !busy;
  if (busy) {
    if (progress === undefined || progress === null) row.bar.removeAttribute("value");
    else row.bar.value = Math.max(0, Math.min(1, progress));
  }
}

function setNote(row: IngestRow, lines: string[]): void {
  row.note.hidden = lines.length === 0;
  row.note.textContent = lines.length > 1 ? `${lines[0]} (+${lines.length - 1} more)` : (lines[0] ?? "");
  row.note.title = lines.join("\n");
}

// ---------------------------------------------------------------- overall progress

/** Files done out of files found, across the runs in progress. */
const progress = { total: 0, done: 0, started: 0, runs: 0, currentFraction: 0 };

function updateOverall(current?: string): void {
  const { total, done } = progress;
  if (current !== undefined) overallText.textContent = current;
  if (total > 0) {
    const fraction = Math.min(1, (done + progress.currentFraction) / total);
    overallBar.value = fraction;
    const elapsed = (performance.now() - progress.started) / 1000;
    const finished = done + progress.currentFraction;
    if (finished > 0.2 && done < total) {
      const eta = (elapsed / finished) * (total - finished);
      overallEta.textContent = `${formatCount(done)} of ${plural(total, "file", "files")} · about ${formatDuration(eta)} left`;
    } else {
      overallEta.textContent = `${formatCount(done)} of ${plural(total, "file", "files")}`;
    }
  } else {
    overallBar.removeAttribute("value");
    overallEta.textContent = "";
  }
}

function fileFinished(): void {
  progress.done += 1;
  progress.currentFraction = 0;
  updateOverall();
}

function onIngestEvent(event: IngestEvent): void {
  switch (event.kind) {
    case "queued":
      setRow(rowFor(event.path, event.name), "queued", event.folder ? "Folder · looking for documents…" : "Queued");
      rowFor(event.path).li.dataset.folder = String(event.folder);
      break;
    case "discovered":
      progress.total += event.files;
      updateOverall(`Adding ${plural(event.files, "file", "files")}…`);
      break;
    case "started":
      setRow(rowFor(event.path, event.name), "working", "Reading…");
      progress.currentFraction = 0;
      updateOverall(`Reading ${event.name}`);
      break;
    case "progress": {
      const fraction = event.total ? (event.done ?? 0) / event.total : null;
      const count = event.total ? ` ${formatCount(event.done ?? 0)}/${formatCount(event.total)}` : "";
      setRow(rowFor(event.path), "working", `${event.stage}${count}`, fraction);
      if (fraction !== null) {
        progress.currentFraction = Math.min(0.99, fraction);
        updateOverall();
      }
      break;
    }
    case "indexed": {
      const parts = ["Indexed"];
      if (event.pages !== null) parts.push(plural(event.pages, "page", "pages"));
      parts.push(plural(event.chunks, "chunk", "chunks"));
      const row = rowFor(event.path);
      if (event.needsOcr) parts.push("some pages need OCR");
      setRow(row, event.needsOcr || event.warnings.length ? "warning" : "indexed", parts.join(" · "));
      setNote(row, event.warnings);
      fileFinished();
      libraryChanged();
      break;
    }
    case "unchanged":
      setRow(rowFor(event.path), "unchanged", "Unchanged · already in the library");
      fileFinished();
      break;
    case "skipped":
      setRow(rowFor(event.path, event.name), "skipped", `Skipped: ${event.reason}`);
      break;
    case "failed":
      setRow(rowFor(event.path), "failed", `Failed: ${event.reason}`);
      if (rowFor(event.path).li.dataset.folder !== "true") fileFinished();
      break;
    case "folderDone": {
      const parts = [`${formatCount(event.indexed)} indexed`];
      if (event.unchanged) parts.push(`${formatCount(event.unchanged)} unchanged`);
      if (event.skipped) parts.push(`${formatCount(event.skipped)} skipped`);
      if (event.failed) parts.push(`${formatCount(event.failed)} failed`);
      const state: RowState = event.failed && !event.indexed ? "failed" : event.indexed ? "indexed" : "unchanged";
      setRow(rowFor(event.path), state, `Folder · ${parts.join(" · ")}`);
      break;
    }
  }
}

function summaryText(s: IngestSummary): string {
  const parts = [`${s.cancelled ? "Cancelled · added" : "Added"} ${plural(s.indexed, "document", "documents")}`];
  if (s.unchanged) parts.push(`${formatCount(s.unchanged)} unchanged`);
  if (s.skipped) parts.push(`${formatCount(s.skipped)} skipped`);
  if (s.failed) parts.push(`${formatCount(s.failed)} failed`);
  if (s.chunks) parts.push(plural(s.chunks, "chunk", "chunks"));
  const seconds = s.seconds ?? 0;
  return `${parts.join(" · ")} in ${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
}

async function runIngest(paths: string[], run: () => Promise<IngestSummary>): Promise<void> {
  if (progress.runs === 0) {
    progress.total = 0;
    progress.done = 0;
    progress.currentFraction = 0;
    progress.started = performance.now();
  }
  progress.runs += 1;
  overall.hidden = false;
  resultLine.hidden = true;
  resultLine.classList.remove("error");
  cancelButton.disabled = false;
  updateOverall("Starting…");
  let cancelled = false;
  try {
    const summary = await run();
    cancelled = summary.cancelled;
    resultLine.textContent = summaryText(summary);
    resultLine.hidden = false;
  } catch (err) {
    const e = asCommandError(err);
    resultLine.textContent = `Could not add documents: ${errorText(e)}`;
    resultLine.classList.add("error");
    resultLine.hidden = false;
    for (const path of paths) {
      const row = rowFor(path);
      if (row.state === "queued" || row.state === "working") setRow(row, "failed", `Failed: ${errorText(e)}`);
    }
  } finally {
    progress.runs -= 1;
    if (progress.runs === 0) {
      overall.hidden = true;
      for (const row of rows.values()) {
        if (row.state === "queued" || row.state === "working") {
          setRow(row, "cancelled", cancelled ? "Cancelled · not indexed" : "Not indexed");
        }
      }
    }
    libraryChanged();
    void refreshDocuments();
  }
}

/** Adds files and folders; what a drop on the window does. */
export async function startIngest(paths: string[]): Promise<void> {
  const unique = [...new Set(paths.map((p) => p.trim()).filter(Boolean))];
  if (!unique.length) return;
  if (!inApp) {
    showNotice("Adding documents needs the Lectern app.");
    return;
  }
  await runIngest(unique, () => ingest(unique, onIngestEvent));
}

cancelButton.addEventListener("click", async () => {
  cancelButton.disabled = true;
  overallText.textContent = "Cancelling after the current file…";
  try {
    await cancelIngest();
  } catch (err) {
    showNotice(`Could not cancel: ${errorText(asCommandError(err))}`);
  }
});

const pathForm = byId<HTMLFormElement>("path-form");
const pathInput = byId<HTMLInputElement>("path-input");
pathForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const path = pathInput.value.trim();
  if (!path) return;
  pathInput.value = "";
  void startIngest([path]);
});

// ---------------------------------------------------------------- drop zone

const overlay = byId("drop-overlay");
const dropNames = byId<HTMLUListElement>("drop-names");

function showOverlay(paths: string[]): void {
  const shown = paths.slice(0, 8).map((p) => h("li", { text: fileName(p), title: p }));
  if (paths.length > shown.length) shown.push(h("li", { class: "muted", text: `and ${paths.length - shown.length} more` }));
  dropNames.replaceChildren(...shown);
  overlay.hidden = false;
}

function hideOverlay(): void {
  overlay.hidden = true;
  dropNames.replaceChildren();
}

/** Listens for files dropped anywhere on the window. */
export function watchDrops(onDrop: () => void): void {
  if (!inApp) return;
  void getCurrentWebview().onDragDropEvent(({ payload }) => {
    switch (payload.type) {
      case "enter":
        showOverlay(payload.paths);
        break;
      case "over":
        overlay.hidden = false;
        break;
      case "drop":
        hideOverlay();
        onDrop();
        void startIngest(payload.paths);
        break;
      case "leave":
        hideOverlay();
        break;
    }
  });
}

// ---------------------------------------------------------------- documents table

const body = byId<HTMLTableSectionElement>("documents-body");
const filterInput = byId<HTMLInputElement>("library-filter");
const formatSelect = byId<HTMLSelectElement>("library-format");
const countLine = byId("library-count");
const emptyState = byId("library-empty");
let docs: DocumentInfo[] = [];
let loading = false;

/** A button that asks once more before it acts. */
function confirmButton(label: string, confirmLabel: string, action: () => Promise<void>): HTMLButtonElement {
  const button = h("button", { class: "small", text: label, attrs: { type: "button" } });
  let armed = false;
  let timer = 0;
  button.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      button.textContent = confirmLabel;
      button.classList.add("danger");
      timer = window.setTimeout(() => {
        armed = false;
        button.textContent = label;
        button.classList.remove("danger");
      }, 4000);
      return;
    }
    window.clearTimeout(timer);
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function statusCell(d: DocumentInfo): HTMLTableCellElement {
  if (d.needsOcr) {
    return h("td", {}, h("span", { class: "badge badge-warn", text: "Needs OCR", title: d.warnings.join("\n") }));
  }
  if (d.warnings.length) {
    return h("td", {}, h("span", { class: "badge badge-warn", text: plural(d.warnings.length, "warning", "warnings"), title: d.warnings.join("\n") }));
  }
  return h("td", {}, h("span", { class: "badge badge-ok", text: "Indexed" }));
}

function selectCell(d: DocumentInfo): HTMLTableCellElement {
  const box = h("input", { class: "doc-select", attrs: { type: "checkbox", "aria-label": `Select ${d.title}` } });
  box.checked = selected.has(d.id);
  box.addEventListener("change", () => {
    if (box.checked) selected.add(d.id);
    else selected.delete(d.id);
    renderSelection();
  });
  return h("td", { class: "select" }, box);
}

function documentRow(d: DocumentInfo): HTMLTableRowElement {
  const remove = confirmButton("Delete", "Really delete?", async () => {
    try {
      await deleteDocument(d.id);
    } catch (err) {
      showNotice(`Could not delete ${d.title}: ${errorText(asCommandError(err))}`);
    }
    libraryChanged();
    await refreshDocuments();
  });
  const reindex = h("button", { class: "small", text: "Re-index", title: "Read the file again", attrs: { type: "button" } });
  reindex.addEventListener("click", () => {
    reindex.disabled = true;
    void runIngest([d.path], () => reindexDocument(d.id, onIngestEvent));
  });
  return h(
    "tr",
    { attrs: { "data-id": d.id } },
    selectCell(d),
    h(
      "td",
      { class: "doc" },
      h(
        "div",
        { class: "doc-title" },
        h("span", { text: d.title, title: d.title }),
        h("span", { class: "doc-path muted", text: d.path, title: d.path }),
        memberOf(d.id).length > 0 && h("span", { class: "doc-collections muted small-text", text: `In ${memberOf(d.id).join(", ")}` }),
      ),
    ),
    h("td", {}, h("span", { class: "format", text: d.format })),
    h("td", { class: "num", text: formatCount(d.pages) }),
    h("td", { class: "num", text: formatCount(d.chunks) }),
    h("td", { class: "num", text: formatBytes(d.bytes) }),
    h("td", { text: formatWhen(d.indexedAt), title: new Date(d.indexedAt * 1000).toLocaleString() }),
    statusCell(d),
    h("td", { class: "actions" }, reindex, remove),
  );
}

function renderDocuments(): void {
  const query = filterInput.value.trim().toLowerCase();
  const format = formatSelect.value;
  const inCollection = currentCollection();
  const shown = docs.filter(
    (d) =>
      (!format || d.format === format) &&
      (!inCollection || inCollection.documentIds.includes(d.id)) &&
      (!query || d.title.toLowerCase().includes(query) || d.path.toLowerCase().includes(query) || d.format.includes(query)),
  );
  shownIds = shown.map((d) => d.id);
  body.replaceChildren(...shown.map(documentRow));
  emptyState.hidden = docs.length > 0;
  renderSelection();
  const chunks = docs.reduce((sum, d) => sum + d.chunks, 0);
  countLine.textContent = docs.length
    ? shown.length === docs.length
      ? `${plural(docs.length, "document", "documents")} · ${plural(chunks, "chunk", "chunks")}`
      : `${formatCount(shown.length)} of ${plural(docs.length, "document", "documents")}`
    : "";
}

function renderFormats(): void {
  const current = formatSelect.value;
  const formats = [...new Set(docs.map((d) => d.format))].sort();
  formatSelect.replaceChildren(
    h("option", { text: "All formats", attrs: { value: "" } }),
    ...formats.map((f) => h("option", { text: f, attrs: { value: f } })),
  );
  formatSelect.value = formats.includes(current) ? current : "";
}

export async function refreshDocuments(): Promise<void> {
  if (!inApp || loading) return;
  loading = true;
  try {
    const [list] = await Promise.all([documents(), refreshCollections(false)]);
    docs = list;
    const known = new Set(docs.map((d) => d.id));
    for (const id of selected) if (!known.has(id)) selected.delete(id);
    renderFormats();
    renderDocuments();
  } catch (err) {
    countLine.textContent = `Library unavailable: ${errorText(asCommandError(err))}`;
  } finally {
    loading = false;
  }
}

filterInput.addEventListener("input", renderDocuments);
formatSelect.addEventListener("change", renderDocuments);

export function focusLibraryFilter(): void {
  filterInput.focus();
  filterInput.select();
}

// ---------------------------------------------------------------- collections

let collections: Collection[] = [];
/** Ids of the documents ticked in the table. */
const selected = new Set<string>();
/** Ids of the rows the table shows now. */
let shownIds: string[] = [];

const collectionSelect = h("select", { attrs: { id: "library-collection" }, title: "Show the documents of one collection" });
const newCollectionButton = h("button", { class: "small", text: "New collection", attrs: { type: "button", id: "collection-new" }, title: "Make a collection (with the selected documents, if any)" });
const renameCollectionButton = h("button", { class: "small", text: "Rename", attrs: { type: "button", id: "collection-rename" } });
const deleteCollectionButton = confirmButton("Delete collection", "Really delete? Documents stay", async () => {
  const current = currentCollection();
  if (!current) return;
  try {
    await deleteCollection(current.name);
    collectionSelect.value = "";
  } catch (err) {
    showNotice(`Could not delete the collection: ${errorText(asCommandError(err))}`);
  }
  await collectionsChanged();
});
deleteCollectionButton.id = "collection-delete";
const nameInput = h("input", { attrs: { type: "text", id: "collection-name", maxlength: "64", "aria-label": "Collection name", placeholder: "Collection name" } });
const nameSave = h("button", { class: "small primary", text: "Save", attrs: { type: "submit" } });
const nameCancel = h("button", { class: "small", text: "Cancel", attrs: { type: "button" } });
const nameForm = h("form", { class: "collection-form", attrs: { id: "collection-form", autocomplete: "off" } }, nameInput, nameSave, nameCancel);
nameForm.hidden = true;
let nameMode: "create" | "rename" = "create";
const selectionLine = h("span", { class: "muted", attrs: { id: "selection-count", "aria-live": "polite" } });
const targetSelect = h("select", { attrs: { id: "collection-target", "aria-label": "Collection to add the selected documents to" } });
const addSelected = h("button", { class: "small", text: "Add to collection", attrs: { type: "button", id: "collection-add" } });
const removeSelected = h("button", { class: "small", text: "Remove from collection", attrs: { type: "button", id: "collection-remove" } });
const collectionsBar = h(
  "div",
  { class: "library-toolbar collections-bar", attrs: { id: "collections-bar" } },
  h("label", { class: "visually-hidden", text: "Collection", attrs: { for: "library-collection" } }),
  collectionSelect,
  newCollectionButton,
  renameCollectionButton,
  deleteCollectionButton,
  nameForm,
  selectionLine,
  targetSelect,
  addSelected,
  removeSelected,
);
document.querySelector(".library-toolbar")?.after(collectionsBar);

// A first column to tick documents, with a box for every row shown.
const selectAll = h("input", { attrs: { type: "checkbox", id: "select-all", "aria-label": "Select every document shown" } });
document.querySelector(".documents thead tr")?.prepend(h("th", { class: "select", attrs: { scope: "col" } }, selectAll));
selectAll.addEventListener("change", () => {
  for (const id of shownIds) {
    if (selectAll.checked) selected.add(id);
    else selected.delete(id);
  }
  renderDocuments();
});

function currentCollection(): Collection | undefined {
  return collections.find((c) => c.name === collectionSelect.value);
}

function memberOf(id: string): string[] {
  return collections.filter((c) => c.documentIds.includes(id)).map((c) => c.name);
}

function renderCollections(): void {
  const current = collectionSelect.value;
  collectionSelect.replaceChildren(
    h("option", { text: "All documents", attrs: { value: "" } }),
    ...collections.map((c) => h("option", { text: `${c.name} (${formatCount(c.documentIds.length)})`, attrs: { value: c.name } })),
  );
  collectionSelect.value = collections.some((c) => c.name === current) ? current : "";
  const target = targetSelect.value;
  targetSelect.replaceChildren(...collections.map((c) => h("option", { text: c.name, attrs: { value: c.name } })));
  if (collections.some((c) => c.name === target)) targetSelect.value = target;
  const inOne = currentCollection() !== undefined;
  renameCollectionButton.hidden = !inOne;
  deleteCollectionButton.hidden = !inOne;
}

function renderSelection(): void {
  const n = selected.size;
  selectionLine.textContent = n ? `${plural(n, "document", "documents")} selected` : "";
  targetSelect.hidden = n === 0 || collections.length === 0;
  addSelected.hidden = targetSelect.hidden;
  removeSelected.hidden = n === 0 || currentCollection() === undefined;
  const current = currentCollection();
  if (current) removeSelected.textContent = `Remove from ${current.name}`;
  selectAll.checked = shownIds.length > 0 && shownIds.every((id) => selected.has(id));
}

/** Reloads the collections; `render` redraws the table as well. */
async function refreshCollections(render = true): Promise<void> {
  if (!inApp) return;
  try {
    collections = await listCollections();
  } catch {
    // Without collections the table still works; the bar stays empty.
    collections = [];
  }
  renderCollections();
  if (render) renderDocuments();
}

async function collectionsChanged(): Promise<void> {
  await refreshCollections();
  libraryChanged();
}

function openNameForm(mode: "create" | "rename"): void {
  nameMode = mode;
  nameInput.value = mode === "rename" ? (currentCollection()?.name ?? "") : "";
  nameSave.textContent = mode === "rename" ? "Rename" : "Create";
  nameForm.hidden = false;
  nameInput.focus();
  nameInput.select();
}

function closeNameForm(): void {
  nameForm.hidden = true;
  nameInput.value = "";
}

newCollectionButton.addEventListener("click", () => openNameForm("create"));
renameCollectionButton.addEventListener("click", () => openNameForm("rename"));
nameCancel.addEventListener("click", closeNameForm);
nameInput.addEventListener("keydown", (e) => {
  if (e.key === "Escape") {
    e.preventDefault();
    e.stopPropagation();
    closeNameForm();
  }
});
nameForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = nameInput.value.trim();
  if (!name) return;
  nameSave.disabled = true;
  try {
    if (nameMode === "rename") {
      const current = currentCollection();
      if (current) {
        const renamed = await renameCollection(current.name, name);
        await refreshCollections(false);
        collectionSelect.value = renamed.name;
      }
    } else {
      let made = await createCollection(name);
      // A collection made while documents are ticked starts with them.
      if (selected.size) made = await addToCollection(made.name, [...selected]);
      await refreshCollections(false);
      targetSelect.value = made.name;
      selectionLine.textContent = `Created ${made.name}`;
    }
    closeNameForm();
  } catch (err) {
    showNotice(`Could not ${nameMode === "rename" ? "rename" : "create"} the collection: ${errorText(asCommandError(err))}`);
  } finally {
    nameSave.disabled = false;
  }
  renderCollections();
  renderDocuments();
  libraryChanged();
});

collectionSelect.addEventListener("change", () => {
  renderCollections();
  renderDocuments();
});

addSelected.addEventListener("click", async () => {
  const name = targetSelect.value;
  if (!name || !selected.size) return;
  const ids = [...selected];
  try {
    await addToCollection(name, ids);
    selected.clear();
  } catch (err) {
    showNotice(`Could not add to ${name}: ${errorText(asCommandError(err))}`);
  }
  await collectionsChanged();
  if (!selected.size) selectionLine.textContent = `Added ${plural(ids.length, "document", "documents")} to ${name}`;
});

removeSelected.addEventListener("click", async () => {
  const current = currentCollection();
  if (!current || !selected.size) return;
  const ids = [...selected];
  try {
    await removeFromCollection(current.name, ids);
    selected.clear();
  } catch (err) {
    showNotice(`Could not remove from ${current.name}: ${errorText(asCommandError(err))}`);
  }
  await collectionsChanged();
  if (!selected.size) selectionLine.textContent = `Removed ${plural(ids.length, "document", "documents")} from ${current.name}`;
});

renderCollections();
renderSelection();
