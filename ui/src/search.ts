/** The search screen: passages with each retrieval leg's rank and score. */
import { asCommandError, inApp, search, type SearchHit, type SearchMode } from "./api";
import { append, byId, formatScore, h, pageLabel } from "./dom";
import { rerankSetting } from "./settings";
import { errorText, plural, showNotice } from "./shell";

const SEARCH_LIMIT = 20;

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
    const response = await search({ query, mode, rerank: rerankSetting(), limit: SEARCH_LIMIT });
    searchResults.replaceChildren(...response.hits.map((hit, i) => renderHit(hit, i, mode)));
    const took = `${Math.round(response.tookMs ?? 0)} ms`;
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

export function focusSearch(): void {
  searchInput.focus();
  searchInput.select();
}
