import "./style.css";
import { getCurrentWebview } from "@tauri-apps/api/webview";
import {
  ask,
  asCommandError,
  gpuStatus,
  inApp,
  ingest,
  libraryStats,
  search,
  stopAnswer,
  type AskEvent,
  type AskResponse,
  type IngestSummary,
  type CommandError,
  type IngestEvent,
  type SearchHit,
  type SearchMode,
  type Source,
} from "./api";
import { append, byId, fileName, formatCount, formatScore, h, pageLabel } from "./dom";

const MAX_INGEST_ROWS = 200;
const SEARCH_LIMIT = 20;

// ---------------------------------------------------------------- notices

const notice = byId("notice");

function showNotice(message: string, source = "app"): void {
  notice.textContent = message;
  notice.dataset.source = source;
  notice.hidden = false;
}

function hideNotice(): void {
  notice.hidden = true;
  notice.textContent = "";
}

function errorText(err: CommandError): string {
  return err.code && err.code !== "error" ? `${err.message} (${err.code})` : err.message;
}

// ---------------------------------------------------------------- tabs

const tabs = [
  { tab: byId<HTMLButtonElement>("tab-ask"), panel: byId("panel-ask"), focus: () => askInput.focus() },
  { tab: byId<HTMLButtonElement>("tab-search"), panel: byId("panel-search"), focus: () => searchInput.focus() },
];

function selectTab(index: number): void {
  tabs.forEach((t, i) => {
    const selected = i === index;
    t.tab.setAttribute("aria-selected", String(selected));
    t.tab.tabIndex = selected ? 0 : -1;
    t.panel.hidden = !selected;
  });
  tabs[index].focus();
}

tabs.forEach((t, i) => {
  t.tab.addEventListener("click", () => selectTab(i));
  t.tab.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      e.preventDefault();
      const next = (i + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length;
      selectTab(next);
      tabs[next].tab.focus();
    }
  });
});

// ---------------------------------------------------------------- library stats

const topbarStats = byId("topbar-stats");
const countDocuments = byId("count-documents");
const countChunks = byId("count-chunks");
let statsPending = false;
let libraryProblem = false;

async function refreshStats(): Promise<void> {
  if (!inApp || statsPending) return;
  statsPending = true;
  try {
    const stats = await libraryStats();
    countDocuments.textContent = formatCount(stats.documents);
    countChunks.textContent = formatCount(stats.chunks);
    const docs = `${formatCount(stats.documents)} ${stats.documents === 1 ? "document" : "documents"}`;
    const chunks = `${formatCount(stats.chunks)} ${stats.chunks === 1 ? "chunk" : "chunks"}`;
    topbarStats.textContent = `${docs} · ${chunks}`;
    libraryProblem = false;
    if (notice.dataset.source === "library") hideNotice();
  } catch (err) {
    const message = errorText(asCommandError(err));
    topbarStats.textContent = "Library unavailable";
    if (!libraryProblem) showNotice(`The library could not open: ${message}`, "library");
    libraryProblem = true;
  } finally {
    statsPending = false;
  }
}

// ---------------------------------------------------------------- compute (GPU)

const computeBadge = byId("compute-badge");
const gpuSummary = byId("gpu-summary");
const gpuFields = byId("gpu-fields");
const gpuRefresh = byId<HTMLButtonElement>("gpu-refresh");
const gpuDetails = byId("gpu-details");
const gpuText = byId("gpu-text");
const GPU_REFRESH_MS = 10_000;

let gpuPending = false;

async function refreshGpu(): Promise<void> {
  if (!inApp || gpuPending) return;
  gpuPending = true;
  gpuRefresh.disabled = true;
  try {
    const status = await gpuStatus();
    computeBadge.dataset.state = status.onCpu ? "cpu" : "gpu";
    computeBadge.textContent = status.onCpu ? "Running on CPU" : `GPU · ${status.device}`;
    computeBadge.title = status.summary;
    gpuSummary.replaceChildren(
      h("strong", status.onCpu ? { class: "cpu-flag", text: "Running on CPU" } : { text: status.device }),
      status.summary && h("span", { class: "muted", text: status.summary }),
    );
    gpuFields.replaceChildren(
      ...status.fields.map((f) => h("div", {}, h("dt", { text: f.label }), h("dd", { text: f.value }))),
    );
    gpuText.textContent = status.text;
    gpuDetails.hidden = !status.text;
  } catch (err) {
    computeBadge.dataset.state = "unknown";
    computeBadge.textContent = "Compute unknown";
    gpuSummary.textContent = `Status unavailable: ${errorText(asCommandError(err))}`;
    gpuFields.replaceChildren();
    gpuDetails.hidden = true;
  } finally {
    gpuPending = false;
    gpuRefresh.disabled = false;
  }
}

gpuRefresh.addEventListener("click", () => void refreshGpu());

// ---------------------------------------------------------------- ingest

type RowState = "queued" | "working" | "indexed" | "skipped" | "failed";

interface IngestRow {
  li: HTMLLIElement;
  status: HTMLSpanElement;
  note: HTMLSpanElement;
  bar: HTMLProgressElement;
  state: RowState;
}

const ingestList = byId<HTMLUListElement>("ingest-list");
const ingestBatch = byId("ingest-batch");
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

function plural(n: number, one: string, many: string): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

let activeBatches = 0;

function onIngestEvent(event: IngestEvent): void {
  switch (event.kind) {
    case "queued":
      setRow(rowFor(event.path, event.name), "queued", event.folder ? "Folder · looking for documents…" : "Queued");
      rowFor(event.path).li.dataset.folder = String(event.folder);
      break;
    case "discovered":
      ingestBatch.textContent = `Adding ${plural(event.files, "file", "files")}…`;
      break;
    case "started":
      setRow(rowFor(event.path, event.name), "working", "Reading…");
      ingestBatch.textContent = `File ${formatCount(event.index + 1)} of ${formatCount(event.total)}: ${event.name}`;
      break;
    case "progress": {
      const fraction = event.total ? (event.done ?? 0) / event.total : null;
      const count = event.total ? ` ${formatCount(event.done ?? 0)}/${formatCount(event.total)}` : "";
      setRow(rowFor(event.path), "working", `${event.stage}${count}`, fraction);
      break;
    }
    case "indexed": {
      const parts = ["Indexed"];
      if (event.pages !== null) parts.push(plural(event.pages, "page", "pages"));
      parts.push(plural(event.chunks, "chunk", "chunks"));
      const row = rowFor(event.path);
      setRow(row, "indexed", parts.join(" · "));
      setNote(row, event.warnings);
      void refreshStats();
      break;
    }
    case "unchanged":
      setRow(rowFor(event.path), "skipped", "Already in the library, unchanged");
      break;
    case "skipped":
      setRow(rowFor(event.path, event.name), "skipped", `Skipped: ${event.reason}`);
      break;
    case "failed":
      setRow(rowFor(event.path), "failed", `Failed: ${event.reason}`);
      break;
    case "folderDone": {
      const parts = [`${formatCount(event.indexed)} indexed`];
      if (event.unchanged) parts.push(`${formatCount(event.unchanged)} unchanged`);
      if (event.skipped) parts.push(`${formatCount(event.skipped)} skipped`);
      if (event.failed) parts.push(`${formatCount(event.failed)} failed`);
      const state: RowState = event.failed && !event.indexed ? "failed" : event.indexed ? "indexed" : "skipped";
      setRow(rowFor(event.path), state, `Folder · ${parts.join(" · ")}`);
      break;
    }
  }
}

function summaryText(s: IngestSummary): string {
  const parts = [`Added ${plural(s.indexed, "document", "documents")}`];
  if (s.unchanged) parts.push(`${formatCount(s.unchanged)} unchanged`);
  if (s.skipped) parts.push(`${formatCount(s.skipped)} skipped`);
  if (s.failed) parts.push(`${formatCount(s.failed)} failed`);
  if (s.chunks) parts.push(plural(s.chunks, "chunk", "chunks"));
  return `${parts.join(" · ")} in ${s.seconds < 10 ? s.seconds.toFixed(1) : Math.round(s.seconds)} s`;
}

async function startIngest(paths: string[]): Promise<void> {
  const unique = [...new Set(paths.map((p) => p.trim()).filter(Boolean))];
  if (!unique.length) return;
  if (!inApp) {
    showNotice("Adding documents needs the Lectern app.");
    return;
  }
  activeBatches += 1;
  ingestBatch.hidden = false;
  ingestBatch.classList.remove("error");
  ingestBatch.textContent = "Starting…";
  try {
    const summary = await ingest(unique, onIngestEvent);
    // While another run is going its progress line stays; its own summary follows.
    if (activeBatches === 1) ingestBatch.textContent = summaryText(summary);
  } catch (err) {
    const e = asCommandError(err);
    ingestBatch.textContent = `Could not add documents: ${errorText(e)}`;
    ingestBatch.classList.add("error");
    for (const path of unique) {
      const row = rowFor(path);
      if (row.state === "queued" || row.state === "working") setRow(row, "failed", `Failed: ${errorText(e)}`);
    }
  } finally {
    activeBatches -= 1;
    if (activeBatches === 0) {
      for (const row of rows.values()) {
        if (row.state === "queued" || row.state === "working") setRow(row, "skipped", "Not indexed");
      }
    }
    void refreshStats();
  }
}

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

if (inApp) {
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
        void startIngest(payload.paths);
        break;
      case "leave":
        hideOverlay();
        break;
    }
  });
}

// ---------------------------------------------------------------- search

const searchForm = byId<HTMLFormElement>("search-form");
const searchInput = byId<HTMLInputElement>("search-input");
const searchMode = byId<HTMLSelectElement>("search-mode");
const searchSubmit = byId<HTMLButtonElement>("search-submit");
const searchMeta = byId("search-meta");
const searchResults = byId<HTMLOListElement>("search-results");

/**
 * Joins the hard line breaks PDF text extraction leaves inside paragraphs,
 * keeping blank lines and lines that start a list item or table row.
 */
function reflow(text: string): string {
  return text.replace(/(?<!\n)\n(?!\n|\s*(?:[|*#>•-]|\d+[.)]\s))/g, " ");
}

function isPdf(path: string | null): boolean {
  return path !== null && /\.pdf$/i.test(path);
}

function rankChip(leg: string, rank: number | null): HTMLSpanElement {
  return h("span", {
    class: rank === null ? "rank rank-miss" : "rank",
    text: rank === null ? `${leg} –` : `${leg} #${rank}`,
    title: rank === null ? `Not in the ${leg} results` : `Rank ${rank} in the ${leg} results`,
  });
}

function renderHit(hit: SearchHit, index: number, mode: SearchMode): HTMLLIElement {
  const ranks = h("div", { class: "hit-ranks" });
  if (mode !== "bm25") append(ranks, rankChip("dense", hit.ranks.dense));
  if (mode !== "dense") append(ranks, rankChip("BM25", hit.ranks.bm25));
  return h(
    "li",
    { class: "hit" },
    h(
      "div",
      { class: "hit-head" },
      h("span", { class: "hit-index", text: String(index + 1) }),
      h("span", { class: "hit-doc", text: hit.document, title: hit.path ?? hit.document }),
      hit.page !== null && h("span", { class: "hit-page", text: pageLabel(hit.page) }),
      h("span", { class: "hit-score", text: `score ${formatScore(hit.score)}` }),
    ),
    ranks,
    hit.headings.length > 0 && h("p", { class: "hit-headings", text: hit.headings.join(" › ") }),
    h("p", { class: "hit-text", text: isPdf(hit.path) ? reflow(hit.text) : hit.text }),
  );
}

searchForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const query = searchInput.value.trim();
  if (!query) return;
  if (!inApp) {
    showNotice("Searching needs the Lectern app.");
    return;
  }
  const mode = searchMode.value as SearchMode;
  searchSubmit.disabled = true;
  searchMeta.textContent = "Searching…";
  searchMeta.classList.remove("error");
  try {
    const response = await search({ query, mode, limit: SEARCH_LIMIT });
    searchResults.replaceChildren(...response.hits.map((hit, i) => renderHit(hit, i, mode)));
    const took = `${Math.round(response.tookMs)} ms`;
    searchMeta.textContent = response.hits.length
      ? `${plural(response.hits.length, "passage", "passages")} · ${mode} · ${took}`
      : `No passages matched · ${mode} · ${took}`;
  } catch (err) {
    searchResults.replaceChildren();
    searchMeta.textContent = `Search failed: ${errorText(asCommandError(err))}`;
    searchMeta.classList.add("error");
  } finally {
    searchSubmit.disabled = false;
  }
});

// ---------------------------------------------------------------- ask

const conversation = byId("conversation");
const askEmpty = byId("ask-empty");
const askForm = byId<HTMLFormElement>("ask-form");
const askInput = byId<HTMLTextAreaElement>("ask-input");
const askMode = byId<HTMLSelectElement>("ask-mode");
const askSubmit = byId<HTMLButtonElement>("ask-submit");

function nearBottom(): boolean {
  return conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 80;
}

function keepScrolled(wasNearBottom: boolean): void {
  if (wasNearBottom) conversation.scrollTop = conversation.scrollHeight;
}

/** Renders answer text with its [n] markers set off; plain text nodes only. */
function renderAnswer(target: HTMLElement, answer: string, known: Set<number>): void {
  target.replaceChildren();
  const marker = /\[(\d+)\]/g;
  let last = 0;
  for (const m of answer.matchAll(marker)) {
    const at = m.index ?? 0;
    if (at > last) append(target, answer.slice(last, at));
    const n = Number(m[1]);
    append(
      target,
      h("span", {
        class: known.has(n) ? "cite" : "cite cite-unknown",
        text: m[0],
        title: known.has(n) ? `Source ${n}` : "Not one of the sources given",
      }),
    );
    last = at + m[0].length;
  }
  if (last < answer.length) append(target, answer.slice(last));
}

function renderSources(list: HTMLOListElement, sources: Source[]): void {
  list.replaceChildren(
    ...sources.map((s) =>
      h(
        "li",
        { class: s.cited ? "source" : "source source-uncited" },
        h("span", { class: "source-n", text: `[${s.n}]` }),
        h("span", { class: "source-doc", text: s.document, title: s.path ?? s.document }),
        s.page !== null && h("span", { class: "source-page", text: pageLabel(s.page) }),
      ),
    ),
  );
}

function statsText(r: AskResponse): string {
  const parts = [plural(r.generatedTokens, "token", "tokens")];
  if (r.decodeMs > 0 && r.generatedTokens > 1) {
    parts.push(`${((r.generatedTokens - 1) / (r.decodeMs / 1000)).toFixed(1)} tokens/s`);
  }
  parts.push(`${(r.tookMs / 1000).toFixed(1)} s`);
  if (r.stopped) parts.unshift("Stopped");
  return parts.join(" · ");
}

async function runAsk(question: string, mode: SearchMode): Promise<void> {
  askEmpty.hidden = true;
  const answerText = h("div", { class: "answer-text" });
  const streamed = document.createTextNode("");
  answerText.append(streamed);
  const status = h("p", { class: "answer-status", text: "Searching your library…" });
  const sourcesTitle = h("h3", { class: "sources-title", text: "Sources" });
  const sourcesList = h("ol", { class: "sources" });
  const sourcesBox = h("div", { class: "answer-sources" }, sourcesTitle, sourcesList);
  sourcesBox.hidden = true;
  const meta = h("p", { class: "answer-meta" });
  meta.hidden = true;
  const answerBox = h("div", { class: "answer", attrs: { "aria-busy": "true" } }, answerText, status, sourcesBox, meta);
  const turn = h("article", { class: "turn" }, h("div", { class: "question", text: question }), answerBox);
  conversation.append(turn);
  conversation.scrollTop = conversation.scrollHeight;

  let finished = false;
  let retrieved: Source[] = [];

  const onEvent = (event: AskEvent): void => {
    if (finished) return;
    const near = nearBottom();
    switch (event.kind) {
      case "sources":
        retrieved = event.sources;
        status.textContent = retrieved.length
          ? `Reading ${plural(retrieved.length, "passage", "passages")}…`
          : "No matching passages; answering without sources…";
        break;
      case "token":
        streamed.appendData(event.text);
        status.textContent = "Writing…";
        break;
    }
    keepScrolled(near);
  };

  try {
    const response = await ask({ question, mode }, onEvent);
    finished = true;
    const near = nearBottom();
    const sources = response.sources.length ? response.sources : retrieved;
    renderAnswer(answerText, response.answer, new Set(sources.map((s) => s.n)));
    status.hidden = true;
    const cited = sources.filter((s) => s.cited);
    if (cited.length) {
      sourcesTitle.textContent = "Sources";
      renderSources(sourcesList, cited);
      sourcesBox.hidden = false;
    } else if (sources.length) {
      sourcesTitle.textContent = "No source cited · passages given to the model";
      renderSources(sourcesList, sources);
      sourcesBox.hidden = false;
    }
    meta.textContent = statsText(response);
    meta.hidden = false;
    keepScrolled(near);
  } catch (err) {
    finished = true;
    status.hidden = false;
    status.classList.add("error");
    status.textContent = `Couldn't answer: ${errorText(asCommandError(err))}`;
  } finally {
    answerBox.setAttribute("aria-busy", "false");
  }
}

let asking = false;

function setAsking(on: boolean): void {
  asking = on;
  askSubmit.textContent = on ? "Stop" : "Ask";
  askSubmit.classList.toggle("danger", on);
  askSubmit.classList.toggle("primary", !on);
}

async function submitAsk(): Promise<void> {
  if (asking) {
    askSubmit.disabled = true;
    try {
      await stopAnswer();
    } catch {
      // Nothing to stop: the answer already finished.
    }
    return;
  }
  const question = askInput.value.trim();
  if (!question) return;
  if (!inApp) {
    showNotice("Asking needs the Lectern app.");
    return;
  }
  setAsking(true);
  askInput.value = "";
  try {
    await runAsk(question, askMode.value as SearchMode);
  } finally {
    setAsking(false);
    askSubmit.disabled = false;
    askInput.focus();
  }
}

askForm.addEventListener("submit", (e) => {
  e.preventDefault();
  void submitAsk();
});

askInput.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    if (!asking) void submitAsk();
  }
});

// ---------------------------------------------------------------- start

if (!inApp) {
  showNotice("This page is Lectern's interface; open it in the Lectern app to use your library.");
  topbarStats.textContent = "Not connected";
  computeBadge.textContent = "Not connected";
  gpuSummary.textContent = "Not connected";
} else {
  void refreshStats();
  void refreshGpu();
  window.setInterval(() => {
    if (!document.hidden) void refreshGpu();
  }, GPU_REFRESH_MS);
}
askInput.focus();
