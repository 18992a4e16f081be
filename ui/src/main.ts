import "./style.css";
import { asCommandError, gpuStatus, inApp, libraryStats, modelsStatus, type ModelInfo } from "./api";
import { exportCurrent, focusQuestion, newConversationShortcut, refreshConversations } from "./chat";
import { byId, formatCount, h } from "./dom";
import { refreshDocuments, watchDrops } from "./library";
import { refreshFolders, startFolders } from "./folders";
import { loadGpuPanel, startGpuPanel } from "./gpu";
import { refreshCatalog } from "./catalog";
import { focusSearch } from "./search";
import { initSettings } from "./settings";
import { bus, errorText, formatBytes, hideNotice, LIBRARY_CHANGED, showNotice } from "./shell";

initSettings();

// ---------------------------------------------------------------- screens

const screens = [
  { tab: byId<HTMLButtonElement>("tab-chat"), panel: byId("screen-chat"), shown: () => focusQuestion() },
  {
    tab: byId<HTMLButtonElement>("tab-library"),
    panel: byId("screen-library"),
    shown: () => {
      void refreshDocuments();
      void refreshFolders();
    },
  },
  { tab: byId<HTMLButtonElement>("tab-search"), panel: byId("screen-search"), shown: () => focusSearch() },
  {
    tab: byId<HTMLButtonElement>("tab-models"),
    panel: byId("screen-models"),
    shown: () => {
      void refreshModels();
      void refreshCatalog();
      void loadGpuPanel();
    },
  },
];

const MODELS_SCREEN = screens.findIndex((s) => s.panel.id === "screen-models");

function selectScreen(index: number): void {
  screens.forEach((s, i) => {
    const selected = i === index;
    s.tab.setAttribute("aria-selected", String(selected));
    s.tab.tabIndex = selected ? 0 : -1;
    s.panel.hidden = !selected;
  });
  screens[index].shown();
}

screens.forEach((s, i) => {
  s.tab.addEventListener("click", () => selectScreen(i));
  s.tab.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      e.preventDefault();
      const next = (i + (e.key === "ArrowRight" ? 1 : screens.length - 1)) % screens.length;
      selectScreen(next);
      screens[next].tab.focus();
    }
  });
});

document.addEventListener("keydown", (e) => {
  if (!(e.ctrlKey || e.metaKey) || e.altKey) return;
  const key = e.key.toLowerCase();
  if (key === "k") {
    e.preventDefault();
    selectScreen(2);
  } else if (key === "n") {
    e.preventDefault();
    selectScreen(0);
    newConversationShortcut();
  } else if (key === "e") {
    e.preventDefault();
    void exportCurrent();
  } else if (key >= "1" && key <= "4") {
    e.preventDefault();
    selectScreen(Number(key) - 1);
  }
});

// ---------------------------------------------------------------- library stats

const topbarStats = byId("topbar-stats");
let statsPending = false;
let libraryProblem = false;

async function refreshStats(): Promise<void> {
  if (!inApp || statsPending) return;
  statsPending = true;
  try {
    const stats = await libraryStats();
    const docs = `${formatCount(stats.documents)} ${stats.documents === 1 ? "document" : "documents"}`;
    const chunks = `${formatCount(stats.chunks)} ${stats.chunks === 1 ? "chunk" : "chunks"}`;
    topbarStats.textContent = `${docs} · ${chunks}`;
    if (libraryProblem) hideNotice("library");
    libraryProblem = false;
  } catch (err) {
    const e = asCommandError(err);
    if (e.code === "no_embedder") {
      // A fresh install: nothing is broken, a model is simply not there yet.
      topbarStats.textContent = "No embedding model";
      if (!libraryProblem)
        showNotice(
          "Lectern needs an embedding model to read and search your documents, and none is installed yet.",
          "library",
          { label: "Get one in Models & GPU", run: () => selectScreen(MODELS_SCREEN) },
        );
    } else {
      topbarStats.textContent = "Library unavailable";
      if (!libraryProblem) showNotice(`The library could not open: ${errorText(e)}`, "library");
    }
    libraryProblem = true;
  } finally {
    statsPending = false;
  }
}

bus.addEventListener(LIBRARY_CHANGED, () => {
  void refreshStats();
  if (!byId("screen-library").hidden) void refreshDocuments();
});

// ---------------------------------------------------------------- models

const modelsBody = byId("models-body");

function modelCard(title: string, m: ModelInfo): HTMLElement {
  return h(
    "div",
    { class: "model" },
    h(
      "div",
      { class: "model-head" },
      h("strong", { text: title }),
      h("span", { class: m.present ? "badge badge-ok" : "badge badge-bad", text: m.present ? "Present" : "Missing" }),
    ),
    h("p", { class: "model-name", text: m.name }),
    h("p", { class: "doc-path muted", text: m.path, title: m.path }),
    h("p", { class: "muted", text: m.bytes ? `${m.detail} · ${formatBytes(m.bytes)} on disk` : m.detail }),
  );
}

async function refreshModels(): Promise<void> {
  if (!inApp) return;
  try {
    const s = await modelsStatus();
    const field = (label: string, value: string) => h("div", {}, h("dt", { text: label }), h("dd", { text: value, title: value }));
    modelsBody.replaceChildren(
      modelCard("Embedder", s.embedder),
      s.llm
        ? modelCard("Language model", s.llm)
        : h(
            "div",
            { class: "model" },
            h("div", { class: "model-head" }, h("strong", { text: "Language model" }), h("span", { class: "badge badge-bad", text: "Not configured" })),
            h("p", { class: "muted", text: "Set LECTERN_LLM to a Qwen3 folder or .gguf file to get answers; search works without one." }),
          ),
      h(
        "dl",
        { class: "gpu-fields" },
        field("Models folder", s.modelsDir),
        field("Library folder", s.dataDir),
        field("Context limit", `${formatCount(s.maxContext)} tokens`),
        field("Device setting", s.devicePreference),
      ),
    );
  } catch (err) {
    modelsBody.replaceChildren(h("p", { class: "error", text: `Models unavailable: ${errorText(asCommandError(err))}` }));
  }
}

byId("models-refresh").addEventListener("click", () => void refreshModels());
byId("catalog-refresh").addEventListener("click", () => void refreshCatalog());

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
    gpuFields.replaceChildren(...status.fields.map((f) => h("div", {}, h("dt", { text: f.label }), h("dd", { text: f.value }))));
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

// ---------------------------------------------------------------- start

if (!inApp) {
  showNotice("This page is Lectern's interface; open it in the Lectern app to use your library.");
  topbarStats.textContent = "Not connected";
  computeBadge.textContent = "Not connected";
  gpuSummary.textContent = "Not connected";
  byId("gpu-live").textContent = "Not connected";
} else {
  watchDrops(() => void 0);
  void refreshStats();
  void refreshGpu();
  void refreshConversations();
  void startGpuPanel();
  void startFolders();
  window.setInterval(() => {
    if (!document.hidden && !byId("screen-models").hidden) void refreshGpu();
  }, GPU_REFRESH_MS);
}
focusQuestion();
