/**
 * The search screen: passages with each retrieval leg's rank and score,
 * from the whole library or one collection.
 */
import { asCommandError, inApp, listCollections, search, type Collection, type SearchHit, type SearchMode } from "./api";
import { append, byId, formatScore, h, pageLabel } from "./dom";
import { rerankSetting } from "./settings";
import { bus, errorText, hideNotice, LIBRARY_CHANGED, plural, showNotice } from "./shell";

const SEARCH_LIMIT = 20;

const searchForm = byId<HTMLFormElement>("search-form");
const searchInput = byId<HTMLInputElement>("search-input");
const searchMode = byId<HTMLSelectElement>("search-mode");
const searchScope = byId<HTMLSelectElement>("search-collection");
const searchSubmit = byId<HTMLButtonElement>("search-submit");
const searchMeta = byId("search-meta");
const searchResults = byId<HTMLOListElement>("search-results");

// ---------------------------------------------------------------- scope

/** The collections the search can be scoped to, as last listed. */
let collections: Collection[] = [];

/** How the result line and the inspector name a scope. */
export function scopeLabel(collection: string | null): string {
  return collection === null ? "in all documents" : `in \u201c${collection}\u201d`;
}

/**
 * Where a chosen collection went when it is no longer listed: its new name
 * when it was renamed (the one new name with the same creation time), or
 * null when it was deleted.
 */
function renamedTo(chosen: string, before: Collection[], after: Collection[]): string | null {
  const old = before.find((c) => c.name === chosen);
  if (!old) return null;
  const known = new Set(before.map((c) => c.name));
  const candidates = after.filter((c) => !known.has(c.name) && c.createdAt === old.createdAt);
  return candidates.length === 1 ? candidates[0].name : null;
}

function renderScopes(): void {
  const chosen = searchScope.value;
  searchScope.replaceChildren(
    h("option", { text: "All documents", attrs: { value: "" } }),
    ...collections.map((c) => h("option", { text: `${c.name} · ${plural(c.documentIds.length, "document", "documents")}`, attrs: { value: c.name } })),
  );
  searchScope.value = collections.some((c) => c.name === chosen) ? chosen : "";
  searchScope.dataset.scoped = String(searchScope.value !== "");
}

/**
 * Reloads the collections. A chosen collection that was renamed stays
 * chosen under its new name; one that is gone falls back to all documents,
 * with a notice. Returns whether the choice fell back.
 */
export async function refreshSearchScopes(): Promise<boolean> {
  if (!inApp) return false;
  let listed: Collection[];
  try {
    listed = await listCollections();
  } catch {
    // Keep what was listed: searching still works, and a search in a
    // collection that has gone says so.
    return false;
  }
  const chosen = searchScope.value;
  const before = collections;
  collections = listed;
  let fellBack = false;
  if (chosen !== "" && !listed.some((c) => c.name === chosen)) {
    const next = renamedTo(chosen, before, listed);
    if (next === null) {
      fellBack = true;
      showNotice(`The collection \u201c${chosen}\u201d no longer exists; Search looks in all documents.`, "search-scope");
    }
    renderScopes();
    searchScope.value = next ?? "";
    searchScope.dataset.scoped = String(next !== null);
    return fellBack;
  }
  renderScopes();
  return false;
}

searchScope.addEventListener("change", () => {
  searchScope.dataset.scoped = String(searchScope.value !== "");
  hideNotice("search-scope");
});
bus.addEventListener(LIBRARY_CHANGED, () => void refreshSearchScopes());
renderScopes();
void refreshSearchScopes();

// ---------------------------------------------------------------- results

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

function rankChip(leg: string, rank: number | null, value: number | null, what: string): HTMLSpanElement {
  return h("span", {
    class: rank === null ? "rank rank-miss" : "rank",
    text: rank === null ? `${leg} –` : `${leg} #${rank} · ${formatScore(value ?? NaN)}`,
    title: rank === null ? `Not in the ${leg} results` : `Rank ${rank} in the ${leg} results (${what})`,
  });
}

function renderHit(hit: SearchHit, index: number, mode: SearchMode): HTMLLIElement {
  const ranks = h("div", { class: "hit-ranks" });
  if (mode !== "bm25") append(ranks, rankChip("dense", hit.ranks.dense, hit.denseDistance, "cosine distance"));
  if (mode !== "dense") append(ranks, rankChip("BM25", hit.ranks.bm25, hit.bm25Score, "BM25 score"));
  const where = hit.location ?? pageLabel(hit.page);
  return h(
    "li",
    { class: "hit" },
    h(
      "div",
      { class: "hit-head" },
      h("span", { class: "hit-index", text: String(index + 1) }),
      h("span", { class: "hit-doc", text: hit.document, title: hit.path ?? hit.document }),
      where !== "" && h("span", { class: "hit-page", text: where }),
      h("span", { class: "hit-score", text: `score ${formatScore(hit.score)}` }),
    ),
    ranks,
    hit.headings.length > 0 && h("p", { class: "hit-headings", text: hit.headings.join(" › ") }),
    h("p", { class: "hit-text", text: isPdf(hit.path) ? reflow(hit.text) : hit.text }),
  );
}

function resultLine(count: number, mode: SearchMode, collection: string | null, tookMs: number | null): string {
  const found = count ? plural(count, "passage", "passages") : "No passages matched";
  return `${found} \u00b7 ${mode} \u00b7 ${scopeLabel(collection)} \u00b7 ${Math.round(tookMs ?? 0)} ms`;
}

async function runSearch(): Promise<void> {
  const query = searchInput.value.trim();
  if (!query) return;
  if (!inApp) {
    showNotice("Searching needs the Lectern app.");
    return;
  }
  const mode = searchMode.value as SearchMode;
  const collection = searchScope.value || null;
  searchSubmit.disabled = true;
  searchMeta.textContent = "Searching…";
  searchMeta.classList.remove("error");
  let again = false;
  try {
    const response = await search({ query, mode, rerank: rerankSetting(), limit: SEARCH_LIMIT, collection });
    searchResults.replaceChildren(...response.hits.map((hit, i) => renderHit(hit, i, mode)));
    searchMeta.textContent = resultLine(response.hits.length, mode, collection, response.tookMs);
    searchMeta.dataset.scope = collection ?? "";
  } catch (err) {
    searchResults.replaceChildren();
    delete searchMeta.dataset.scope;
    // A collection deleted since it was chosen falls back to all
    // documents, with a notice, and the search runs once more there.
    again = collection !== null && (await refreshSearchScopes()) && searchScope.value === "";
    if (!again) {
      searchMeta.textContent = `Search failed: ${errorText(asCommandError(err))}`;
      searchMeta.classList.add("error");
    }
  } finally {
    searchSubmit.disabled = false;
  }
  if (again) await runSearch();
}

searchForm.addEventListener("submit", (e) => {
  e.preventDefault();
  void runSearch();
});

export function focusSearch(): void {
  void refreshSearchScopes();
  searchInput.focus();
  searchInput.select();
}
