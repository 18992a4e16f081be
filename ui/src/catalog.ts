/**
 * The model catalog on the Models screen: every model Lectern knows, its
 * size, whether it is installed, whether it fits this machine (the GPU
 * manager's recommendation), and downloads with progress and cancel.
 */
import { asCommandError, cancelDownload, downloadModel, inApp, modelCatalog, type CatalogModelView, type DownloadUpdate } from "./api";
import { byId, formatCount, h } from "./dom";
import { errorText, formatBytes, libraryChanged } from "./shell";

const body = byId("catalog-body");
const summary = byId("catalog-summary");
const result = byId("catalog-result");
let downloading: string | null = null;

function fitBadge(m: CatalogModelView): HTMLElement | null {
  if (m.recommended) return h("span", { class: "badge badge-ok", text: "Recommended here" });
  if (m.fits === true) return h("span", { class: "badge", text: "Fits" });
  if (m.fits === false) return h("span", { class: "badge badge-warn", text: "Too large here", title: m.note });
  return null;
}

function stateText(m: CatalogModelView): string {
  if (m.state === "installed") return "Installed";
  if (m.state === "partial") return `Incomplete (${m.missing.length} missing)`;
  return m.downloadable ? "Not installed" : "Not installed · provisioned locally";
}

function row(m: CatalogModelView): HTMLTableRowElement {
  const progress = h("progress", { class: "catalog-progress", attrs: { max: "1" } });
  progress.hidden = true;
  const status = h("span", { class: "muted small-text catalog-status" });
  const action = h("button", { class: "small", attrs: { type: "button" } });
  const canDownload = m.downloadable && m.state !== "installed";
  action.textContent = m.state === "partial" ? "Resume" : "Download";
  action.hidden = !canDownload;
  action.disabled = downloading !== null;
  action.addEventListener("click", () => void startDownload(m, action, progress, status));
  const detail = [m.kind === "llm" ? "language model" : m.kind];
  if (m.maxContext !== null) detail.push(`up to ${formatCount(m.maxContext)} tokens of context`);
  if (m.license) detail.push(m.license);
  return h(
    "tr",
    { attrs: { "data-id": m.id, "data-state": m.state } },
    h("td", {}, h("div", { class: "doc-title" }, h("span", { text: m.id }), h("span", { class: "doc-path muted", text: detail.join(" · ") }))),
    h("td", { class: "num", text: m.sizeBytes !== null ? formatBytes(m.sizeBytes) : "–" }),
    h("td", {}, fitBadge(m)),
    h("td", {}, h("span", { text: stateText(m) }), status, progress),
    h("td", { class: "actions" }, action),
  );
}

async function startDownload(m: CatalogModelView, action: HTMLButtonElement, progress: HTMLProgressElement, status: HTMLElement): Promise<void> {
  if (downloading !== null) {
    if (downloading === m.id) await cancelDownload().catch(() => false);
    return;
  }
  downloading = m.id;
  for (const b of Array.from(body.querySelectorAll<HTMLButtonElement>("button"))) b.disabled = b !== action;
  action.textContent = "Cancel";
  progress.hidden = false;
  progress.removeAttribute("value");
  const total = m.sizeBytes ?? 0;
  let completed = 0;
  let current = 0;
  const onEvent = (e: DownloadUpdate): void => {
    switch (e.kind) {
      case "fileStarted":
        current = e.size;
        status.textContent = ` · ${e.file}`;
        break;
      case "progress":
        if (total > 0) progress.value = Math.min(1, (completed + e.done) / total);
        status.textContent = ` · ${e.file} ${formatBytes(e.done)} of ${formatBytes(e.size)}`;
        break;
      case "fileVerified":
        completed += current;
        current = 0;
        status.textContent = ` · ${e.file} verified`;
        break;
      case "fileSkipped":
        status.textContent = ` · ${e.file} already there`;
        break;
      case "finished":
        status.textContent = "";
        break;
    }
  };
  try {
    await downloadModel(m.id, onEvent);
    result.textContent = `${m.id} is installed and verified.`;
    // A first embedding model lets the library open; the screens recheck.
    libraryChanged();
  } catch (err) {
    const e = asCommandError(err);
    result.textContent =
      e.code === "cancelled" ? `The download of ${m.id} was cancelled; verified files are kept for next time.` : `Could not download ${m.id}: ${errorText(e)}`;
  } finally {
    downloading = null;
    await refreshCatalog();
  }
}

/** Fetches the catalog and redraws the table. */
export async function refreshCatalog(): Promise<void> {
  if (!inApp || downloading !== null) return;
  try {
    const catalog = await modelCatalog();
    summary.textContent = `${catalog.recommendation} (planned for ${formatCount(catalog.plannedContext)} tokens of context; models go to ${catalog.modelsDir}.)`;
    body.replaceChildren(...catalog.models.map(row));
  } catch (err) {
    body.replaceChildren();
    summary.textContent = `Catalog unavailable: ${errorText(asCommandError(err))}`;
  }
}
