/**
 * The chat screen: conversations in a sidebar (stored by the engine),
 * streamed answers rendered as sanitized Markdown with citation chips, a
 * source panel for the cited passage and a retrieval inspector per answer.
 * Each conversation has a scope, shown in its header: all documents or one
 * collection.
 */
import { save } from "@tauri-apps/plugin-dialog";
import {
  ask,
  asCommandError,
  createConversation,
  deleteConversation,
  exportConversation,
  getConversation,
  inApp,
  listCollections,
  listConversations,
  renameConversation,
  setConversationCollection,
  stopAnswer,
  type AskEvent,
  type AskResponse,
  type CheckView,
  type Collection,
  type ConversationSummary,
  type SearchMode,
  type Source,
  type StoredMessage,
} from "./api";
import { byId, formatCount, formatScore, h } from "./dom";
import { linkCitations, renderMarkdown } from "./markdown";
import { clearPdf, showPdfPage } from "./pdfview";
import { scopeLabel } from "./search";
import { rerankSetting } from "./settings";
import { bus, errorText, formatWhen, hideNotice, LIBRARY_CHANGED, plural, showNotice } from "./shell";

const conversation = byId("conversation");
const askEmpty = byId("ask-empty");
const askForm = byId<HTMLFormElement>("ask-form");
const askInput = byId<HTMLTextAreaElement>("ask-input");
const askMode = byId<HTMLSelectElement>("ask-mode");
const askSubmit = byId<HTMLButtonElement>("ask-submit");
const askThink = byId<HTMLInputElement>("ask-think");
const THINK_KEY = "lectern.think";
try {
  askThink.checked = window.localStorage.getItem(THINK_KEY) === "1";
} catch {
  // Unreadable storage: start unchecked.
}
askThink.addEventListener("change", () => {
  try {
    window.localStorage.setItem(THINK_KEY, askThink.checked ? "1" : "0");
  } catch {
    // Not kept; the box still works for this session.
  }
});
const chatTitle = byId("chat-title");
const list = byId<HTMLUListElement>("conversation-list");
const listEmpty = byId("conversations-empty");
const newChat = byId<HTMLButtonElement>("new-chat");
const exportButton = byId<HTMLButtonElement>("export-chat");

let conversations: ConversationSummary[] = [];
let currentId: string | null = null;
let asking = false;

// ---------------------------------------------------------------- scope

/** The collection the open (or next) conversation answers from; null: all documents. */
let currentScope: string | null = null;
let scopes: Collection[] = [];
const scopeSelect = h("select", { class: "scope-select", attrs: { id: "chat-scope", "aria-label": "Answer from" }, title: "Which documents answers come from" });
exportButton.before(scopeSelect);

function renderScope(): void {
  const options = [h("option", { text: "All documents", attrs: { value: "" } })];
  for (const c of scopes) options.push(h("option", { text: `${c.name} · ${plural(c.documentIds.length, "document", "documents")}`, attrs: { value: c.name } }));
  if (currentScope !== null && !scopes.some((c) => c.name === currentScope)) {
    options.push(h("option", { text: `${currentScope} (missing)`, attrs: { value: currentScope } }));
  }
  scopeSelect.replaceChildren(...options);
  scopeSelect.value = currentScope ?? "";
  scopeSelect.dataset.scoped = String(currentScope !== null);
}

/**
 * Reloads the collections the scope can be set to. When the open
 * conversation's collection is no longer listed (renamed or deleted
 * elsewhere, which the conversation follows), its scope is read again.
 */
export async function refreshScopes(): Promise<void> {
  if (!inApp) return;
  try {
    scopes = await listCollections();
  } catch {
    // The scope stays "All documents" and whatever is set.
    scopes = [];
  }
  const id = currentId;
  if (id !== null && !asking && currentScope !== null && scopes.length && !scopes.some((c) => c.name === currentScope)) {
    try {
      const c = await getConversation(id);
      if (currentId === id) currentScope = c.collection ?? null;
    } catch {
      // Shown as missing; the next question says what is wrong.
    }
  }
  renderScope();
}

scopeSelect.addEventListener("change", async () => {
  const chosen = scopeSelect.value || null;
  if (currentId === null) {
    // Set on the conversation when its first question creates it.
    currentScope = chosen;
    renderScope();
    return;
  }
  try {
    const c = await setConversationCollection(currentId, chosen);
    currentScope = c.collection ?? null;
  } catch (err) {
    showNotice(`Could not change what this conversation answers from: ${errorText(asCommandError(err))}`);
  }
  renderScope();
});

bus.addEventListener(LIBRARY_CHANGED, () => void refreshScopes());
renderScope();

// ---------------------------------------------------------------- source panel

const panel = byId("source-panel");
const panelDoc = byId("source-doc");
const panelWhere = byId("source-where");
const panelPath = byId("source-path");
const panelHeadings = byId("source-headings");
const panelPassage = byId("source-passage");
const panelScores = byId("source-scores");
let panelOpener: HTMLElement | null = null;

function where(s: Source): string {
  return s.location || (s.page !== null ? `p. ${s.page}` : "");
}

/** Collapses the hard line breaks PDF extraction leaves inside paragraphs. */
function reflow(text: string, path: string | null): string {
  if (path === null || !/\.pdf$/i.test(path)) return text;
  return text.replace(/(?<!\n)\n(?!\n|\s*(?:[|*#>•-]|\d+[.)]\s))/g, " ");
}

function scoreFields(s: Source): HTMLElement[] {
  const row = (label: string, value: string) => h("div", {}, h("dt", { text: label }), h("dd", { text: value }));
  return [
    row("BM25", s.ranks.bm25 !== null ? `#${s.ranks.bm25} · score ${formatScore(s.bm25Score ?? NaN)}` : "not retrieved"),
    row("Dense", s.ranks.dense !== null ? `#${s.ranks.dense} · distance ${formatScore(s.denseDistance ?? NaN)}` : "not retrieved"),
    row("Fused", formatScore(s.score)),
    row("Characters", `${formatCount(s.charStart)}–${formatCount(s.charEnd)}`),
  ];
}

export function showSource(s: Source, opener: HTMLElement | null = null): void {
  panelOpener = opener;
  panelDoc.textContent = `[${s.n}] ${s.document}`;
  panelWhere.textContent = where(s) || "Whole document";
  panelPath.textContent = s.path ?? "";
  panelPath.title = s.path ?? "";
  panelHeadings.textContent = s.headings.join(" › ");
  panelHeadings.hidden = s.headings.length === 0;
  const mark = h("mark", { text: reflow(s.text, s.path) });
  panelPassage.replaceChildren(mark);
  void showPdfPage(s);
  panelScores.replaceChildren(...scoreFields(s));
  panel.hidden = false;
  panel.focus();
  byId<HTMLButtonElement>("source-close").focus();
}

function closeSource(): void {
  panel.hidden = true;
  clearPdf();
  panelOpener?.focus();
  panelOpener = null;
}

byId("source-close").addEventListener("click", closeSource);
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !panel.hidden) closeSource();
});

// ---------------------------------------------------------------- answers

interface AnswerParts {
  thinking: HTMLDetailsElement;
  body: HTMLDivElement;
  status: HTMLParagraphElement;
  sourcesBox: HTMLDivElement;
  inspector: HTMLDetailsElement;
  meta: HTMLParagraphElement;
  box: HTMLDivElement;
}

function answerShell(): AnswerParts {
  const thinking = h("details", { class: "thinking" }, h("summary", { text: "Thinking…" }), h("div", { class: "thinking-text" }));
  thinking.hidden = true;
  const body = h("div", { class: "answer-text markdown" });
  const status = h("p", { class: "answer-status" });
  const sourcesBox = h("div", { class: "answer-sources" });
  sourcesBox.hidden = true;
  const inspector = h("details", { class: "inspector" });
  inspector.hidden = true;
  const meta = h("p", { class: "answer-meta" });
  meta.hidden = true;
  const box = h("div", { class: "answer" }, thinking, body, status, sourcesBox, inspector, meta);
  return { thinking, body, status, sourcesBox, inspector, meta, box };
}

/** Shows the model's reasoning, folded above its answer; plain text, never Markdown. */
function renderThinking(parts: AnswerParts, text: string, done: boolean): void {
  const trimmed = text.trim();
  parts.thinking.hidden = trimmed.length === 0;
  const summary = parts.thinking.querySelector("summary");
  if (summary) summary.textContent = done ? `Thought process · ${plural(trimmed.split(/\s+/).filter(Boolean).length, "word", "words")}` : "Thinking…";
  const body = parts.thinking.querySelector(".thinking-text");
  if (body) body.textContent = trimmed;
}

function renderAnswerText(parts: AnswerParts, text: string, sources: Source[], checks: CheckView[] = []): void {
  const byN = new Map(sources.map((s) => [s.n, s]));
  const doubts = new Map<number, string>();
  for (const c of checks) if (c.flagged && !doubts.has(c.n)) doubts.set(c.n, c.reason);
  const fragment = renderMarkdown(text);
  linkCitations(fragment, {
    known: (n) => byN.has(n),
    cited: (n) => byN.get(n)?.cited ?? false,
    flagged: (n) => doubts.get(n) ?? null,
  });
  parts.body.replaceChildren(fragment);
  for (const chip of Array.from(parts.body.querySelectorAll<HTMLButtonElement>("button.cite"))) {
    const source = byN.get(Number(chip.dataset.cite));
    if (source) chip.addEventListener("click", () => showSource(source, chip));
  }
}

function sourceItem(s: Source): HTMLLIElement {
  const button = h(
    "button",
    { class: "source-open", attrs: { type: "button" }, title: s.path ?? s.document },
    h("span", { class: "source-n", text: String(s.n) }),
    h("span", { class: "source-doc", text: s.document }),
    where(s) && h("span", { class: "source-page", text: where(s) }),
  );
  button.addEventListener("click", () => showSource(s, button));
  return h("li", { class: s.cited ? "source" : "source source-uncited" }, button);
}

function renderSources(parts: AnswerParts, sources: Source[]): void {
  const cited = sources.filter((s) => s.cited);
  const shown = cited.length ? cited : sources;
  if (!shown.length) {
    parts.sourcesBox.hidden = true;
    return;
  }
  parts.sourcesBox.replaceChildren(
    h("h3", { class: "sources-title", text: cited.length ? "Sources" : "No source cited · passages the model was given" }),
    h("ol", { class: "sources" }, ...shown.map(sourceItem)),
  );
  parts.sourcesBox.hidden = false;
}

function rankCell(rank: number | null, value: number | null, label: string): HTMLTableCellElement {
  if (rank === null) return h("td", { class: "num muted", text: "–", title: `Not in the ${label} results` });
  return h("td", { class: "num", text: `#${rank}`, title: `${label}: ${formatScore(value ?? NaN)}` }, h("span", { class: "muted", text: ` ${formatScore(value ?? NaN)}` }));
}

/**
 * Which documents an answer was retrieved from: a collection's name, null
 * for the whole library, undefined when a stored answer did not keep it.
 */
type AnswerScope = string | null | undefined;

function scopeChip(scope: AnswerScope): HTMLSpanElement {
  if (scope === undefined) {
    return h("span", { class: "inspector-scope muted", text: "scope not recorded", title: "This answer was stored before Lectern kept which documents it was retrieved from" });
  }
  return h("span", {
    class: scope === null ? "inspector-scope" : "inspector-scope scoped",
    text: scopeLabel(scope),
    title: scope === null ? "Retrieved from the whole library" : `Retrieved only from the collection \u201c${scope}\u201d`,
    attrs: { "data-scope": scope ?? "" },
  });
}

function renderInspector(parts: AnswerParts, sources: Source[], promptTokens: number | null, mode: string | null, scope: AnswerScope): void {
  if (!sources.length) {
    parts.inspector.hidden = true;
    return;
  }
  const rows = sources.map((s) => {
    const open = h("button", { class: "link", text: `[${s.n}]`, attrs: { type: "button" }, title: "Show the passage" });
    open.addEventListener("click", () => showSource(s, open));
    return h(
      "tr",
      { class: s.cited ? "cited" : "" },
      h("td", {}, open),
      h("td", { class: "doc-cell", text: `${s.document}${where(s) ? ` · ${where(s)}` : ""}`, title: s.path ?? "" }),
      rankCell(s.ranks.bm25, s.bm25Score, "BM25 score"),
      rankCell(s.ranks.dense, s.denseDistance, "cosine distance"),
      h("td", { class: "num", text: formatScore(s.score) }),
      s.rerankScore == null
        ? h("td", { class: "num muted", text: "–", title: "Not reranked" })
        : h("td", { class: "num rerank", text: formatScore(s.rerankScore), title: "Cross-encoder reranker score" }),
      h("td", { text: s.cited ? "cited" : "" }),
    );
  });
  const after = [plural(sources.length, "passage", "passages")];
  if (promptTokens !== null) after.push(`${formatCount(promptTokens)} prompt tokens`);
  parts.inspector.replaceChildren(
    h("summary", {}, mode === null ? "Retrieval · " : `Retrieval · ${mode} · `, scopeChip(scope), ` · ${after.join(" · ")}`),
    h(
      "table",
      { class: "inspector-table" },
      h(
        "thead",
        {},
        h("tr", {}, h("th", { text: "" }), h("th", { text: "Passage" }), h("th", { class: "num", text: "BM25 rank · score" }), h("th", { class: "num", text: "Dense rank · distance" }), h("th", { class: "num", text: "Fused" }), h("th", { class: "num", text: "Rerank" }), h("th", { text: "" })),
      ),
      h("tbody", {}, ...rows),
    ),
  );
  parts.inspector.hidden = false;
}

function notInDocuments(parts: AnswerParts): void {
  parts.body.replaceChildren(
    h(
      "div",
      { class: "not-found" },
      h("strong", { text: "Not in your documents" }),
      h("span", { text: "Nothing in your library matches this question, so Lectern did not make up an answer. Add documents that cover it, or rephrase." }),
    ),
  );
}

function statsText(r: AskResponse): string {
  const parts = [plural(r.generatedTokens, "token", "tokens")];
  const decodeMs = r.decodeMs ?? 0;
  if (decodeMs > 0 && r.generatedTokens > 1) {
    parts.push(`${((r.generatedTokens - 1) / (decodeMs / 1000)).toFixed(1)} tokens/s`);
  }
  parts.push(`${((r.tookMs ?? 0) / 1000).toFixed(1)} s`);
  const doubted = new Set(r.checks.filter((c) => c.flagged).map((c) => c.n)).size;
  if (doubted) parts.push(`${plural(doubted, "citation", "citations")} may not be supported by the source`);
  if (r.stopped) parts.unshift("Stopped");
  return parts.join(" · ");
}

function addTurn(question: string): AnswerParts {
  askEmpty.hidden = true;
  const parts = answerShell();
  conversation.append(h("article", { class: "turn" }, h("div", { class: "question", text: question }), parts.box));
  return parts;
}

function showStored(messages: StoredMessage[]): void {
  conversation.querySelectorAll(".turn").forEach((t) => t.remove());
  askEmpty.hidden = messages.length > 0;
  let parts: AnswerParts | null = null;
  for (const m of messages) {
    if (m.role === "user") {
      parts = addTurn(m.text);
      continue;
    }
    if (!parts) parts = addTurn("");
    renderThinking(parts, m.thinking ?? "", true);
    if (m.notInDocuments) notInDocuments(parts);
    else renderAnswerText(parts, m.text, m.sources, m.checks);
    renderSources(parts, m.sources);
    // A stored answer keeps its scope (older ones do not), not its mode or prompt size.
    renderInspector(parts, m.sources, null, null, m.scope == null ? undefined : m.scope.collection);
    if (m.stopped) {
      parts.meta.textContent = "Stopped";
      parts.meta.hidden = false;
    }
    parts = null;
  }
  conversation.scrollTop = conversation.scrollHeight;
}

function nearBottom(): boolean {
  return conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 80;
}

async function runAsk(question: string, mode: SearchMode): Promise<void> {
  // The conversation answers from the scope it has now (a new one gets it
  // before the question).
  const scope = currentScope;
  const parts = addTurn(question);
  parts.status.textContent = "Searching your library…";
  parts.box.setAttribute("aria-busy", "true");
  conversation.scrollTop = conversation.scrollHeight;

  let finished = false;
  let retrieved: Source[] = [];
  let buffer = "";
  let thought = "";
  let tokens = 0;
  let pending = 0;
  const flush = (): void => {
    pending = 0;
    if (finished) return;
    const near = nearBottom();
    renderAnswerText(parts, buffer, retrieved);
    if (near) conversation.scrollTop = conversation.scrollHeight;
  };

  const onEvent = (event: AskEvent): void => {
    if (finished) return;
    switch (event.kind) {
      case "sources":
        retrieved = event.sources;
        parts.status.textContent = retrieved.length ? `Reading ${plural(retrieved.length, "passage", "passages")}…` : "Nothing matched in your library.";
        renderInspector(parts, retrieved, event.promptTokens, mode, scope);
        break;
      case "thinking":
        thought += event.text;
        parts.status.textContent = "Thinking…";
        renderThinking(parts, thought, false);
        break;
      case "restarted":
        // The answer starts over on another device: what was shown is void.
        buffer = "";
        thought = "";
        tokens = 0;
        window.clearTimeout(pending);
        pending = 0;
        renderThinking(parts, thought, false);
        renderAnswerText(parts, buffer, retrieved);
        parts.status.textContent = `Starting the answer again: ${event.reason}`;
        break;
      case "token":
        buffer += event.text;
        tokens += 1;
        parts.box.dataset.tokens = String(tokens);
        parts.status.textContent = "Writing…";
        if (!pending) pending = window.setTimeout(flush, 40);
        break;
    }
  };

  try {
    if (currentId === null) {
      const created = await createConversation(question);
      currentId = created.id;
      chatTitle.textContent = created.title;
      exportButton.hidden = false;
      if (currentScope !== null) await setConversationCollection(created.id, currentScope);
    }
    const response = await ask({ question, mode, rerank: rerankSetting(), conversationId: currentId, think: askThink.checked }, onEvent);
    finished = true;
    window.clearTimeout(pending);
    const near = nearBottom();
    parts.status.hidden = true;
    renderThinking(parts, response.thinking, true);
    if (response.notInDocuments) {
      notInDocuments(parts);
    } else {
      renderAnswerText(parts, response.answer, response.sources, response.checks);
    }
    renderSources(parts, response.sources);
    renderInspector(parts, response.sources, response.promptTokens, mode, scope);
    parts.meta.textContent = statsText(response);
    parts.meta.hidden = response.notInDocuments;
    if (near) conversation.scrollTop = conversation.scrollHeight;
  } catch (err) {
    finished = true;
    window.clearTimeout(pending);
    parts.status.hidden = false;
    parts.status.classList.add("error");
    parts.status.textContent = `Couldn't answer: ${errorText(asCommandError(err))}`;
  } finally {
    parts.box.setAttribute("aria-busy", "false");
    await refreshConversations();
  }
}

function setAsking(on: boolean): void {
  asking = on;
  askSubmit.textContent = on ? "Stop" : "Ask";
  askSubmit.classList.toggle("danger", on);
  askSubmit.classList.toggle("primary", !on);
  newChat.disabled = on;
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

// ---------------------------------------------------------------- conversations

function startRename(item: HTMLLIElement, c: ConversationSummary): void {
  const input = h("input", { class: "rename-input", attrs: { type: "text", value: c.title, "aria-label": "Conversation title" } });
  const label = item.querySelector(".conversation-open");
  label?.replaceWith(input);
  input.focus();
  input.select();
  let done = false;
  const finish = async (save: boolean): Promise<void> => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (save && title && title !== c.title) {
      try {
        await renameConversation(c.id, title);
      } catch (err) {
        showNotice(`Could not rename: ${errorText(asCommandError(err))}`);
      }
    }
    await refreshConversations();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      void finish(true);
    } else if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      void finish(false);
    }
  });
  input.addEventListener("blur", () => void finish(true));
}

function conversationItem(c: ConversationSummary): HTMLLIElement {
  const open = h(
    "button",
    { class: "conversation-open", attrs: { type: "button" }, title: c.title },
    h("span", { class: "conversation-title", text: c.title }),
    h("span", { class: "conversation-when muted", text: `${formatWhen(c.updatedAt)} · ${plural(Math.ceil(c.messages / 2), "question", "questions")}` }),
  );
  const rename = h("button", { class: "icon", text: "✎", title: "Rename", attrs: { type: "button", "aria-label": `Rename ${c.title}` } });
  const remove = h("button", { class: "icon", text: "✕", title: "Delete", attrs: { type: "button", "aria-label": `Delete ${c.title}` } });
  const item = h("li", { class: c.id === currentId ? "conversation-item current" : "conversation-item" }, open, rename, remove);
  open.addEventListener("click", () => void openConversation(c.id));
  rename.addEventListener("click", () => startRename(item, c));
  let armed = false;
  remove.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      remove.textContent = "Delete?";
      remove.classList.add("danger");
      window.setTimeout(() => {
        armed = false;
        remove.textContent = "✕";
        remove.classList.remove("danger");
      }, 4000);
      return;
    }
    try {
      await deleteConversation(c.id);
      if (c.id === currentId) startNewConversation();
    } catch (err) {
      showNotice(`Could not delete: ${errorText(asCommandError(err))}`);
    }
    await refreshConversations();
  });
  return item;
}

export async function refreshConversations(): Promise<void> {
  if (!inApp) return;
  if (!scopes.length) void refreshScopes();
  try {
    conversations = await listConversations();
  } catch (err) {
    listEmpty.textContent = `Conversations unavailable: ${errorText(asCommandError(err))}`;
    listEmpty.hidden = false;
    return;
  }
  list.replaceChildren(...conversations.map(conversationItem));
  listEmpty.hidden = conversations.length > 0;
  const current = conversations.find((c) => c.id === currentId);
  if (current) chatTitle.textContent = current.title;
}

async function openConversation(id: string): Promise<void> {
  if (asking) return;
  try {
    const c = await getConversation(id);
    currentId = c.id;
    currentScope = c.collection ?? null;
    renderScope();
    chatTitle.textContent = c.title;
    exportButton.hidden = false;
    panel.hidden = true;
    showStored(c.messages);
    await refreshConversations();
    askInput.focus();
  } catch (err) {
    showNotice(`Could not open the conversation: ${errorText(asCommandError(err))}`);
  }
}

function startNewConversation(): void {
  currentId = null;
  currentScope = null;
  renderScope();
  exportButton.hidden = true;
  chatTitle.textContent = "New conversation";
  panel.hidden = true;
  showStored([]);
  list.querySelectorAll(".current").forEach((n) => n.classList.remove("current"));
  askInput.focus();
}

newChat.addEventListener("click", () => {
  if (!asking) startNewConversation();
});

export function newConversationShortcut(): void {
  if (!asking) startNewConversation();
}

/** A file name for the export, from the conversation's title. */
export function exportFileName(title: string): string {
  const safe = title
    .replace(/[\\/:*?"<>|\u0000-\u001f]+/g, " ")
    .replace(/\s+/g, " ")
    .trim()
    .slice(0, 80)
    .trim();
  return `${safe || "Conversation"}.md`;
}

/** Asks where to save the open conversation and writes it there as Markdown. */
export async function exportCurrent(): Promise<void> {
  if (currentId === null || asking) return;
  const id = currentId;
  let path: string | null;
  try {
    path = await save({
      title: "Export conversation",
      defaultPath: exportFileName(chatTitle.textContent ?? ""),
      filters: [{ name: "Markdown", extensions: ["md"] }],
    });
  } catch (err) {
    showNotice(`Could not open the save dialog: ${errorText(asCommandError(err))}`);
    return;
  }
  if (!path) return;
  try {
    const written = await exportConversation(id, path);
    showNotice(`Saved the conversation to ${written}`, "export");
    window.setTimeout(() => hideNotice("export"), 6000);
  } catch (err) {
    showNotice(`Could not export: ${errorText(asCommandError(err))}`);
  }
}

exportButton.addEventListener("click", () => void exportCurrent());

export function focusQuestion(): void {
  askInput.focus();
}
