/**
 * Preferences kept in the webview's storage: the colour theme, the
 * retrieval mode new questions and searches start with, and whether the
 * cross-encoder reranks what every search and question retrieves. Missing
 * or unreadable storage falls back to the defaults.
 */
import type { RerankSetting } from "./api";
import { byId } from "./dom";

export type Theme = "system" | "light" | "dark";
export type Mode = "hybrid" | "dense" | "bm25";
export type Rerank = RerankSetting;

export interface Settings {
  theme: Theme;
  mode: Mode;
  /** auto: rerank when a reranker is installed; on: always (an error without one); off: never. */
  rerank: Rerank;
}

export const DEFAULTS: Settings = { theme: "system", mode: "hybrid", rerank: "auto" };
const KEY = "lectern.settings";
const THEMES: Theme[] = ["system", "light", "dark"];
const MODES: Mode[] = ["hybrid", "dense", "bm25"];
const RERANKS: Rerank[] = ["auto", "on", "off"];

/** The settings in force: the stored ones until the Settings card changes them. */
let current: Settings | null = null;

/** Reads the stored settings, keeping only values this version knows. */
export function loadSettings(storage: Storage | null = safeStorage()): Settings {
  try {
    const raw = storage?.getItem(KEY);
    if (!raw) return { ...DEFAULTS };
    const parsed = JSON.parse(raw) as Partial<Record<keyof Settings, unknown>>;
    return {
      theme: THEMES.includes(parsed.theme as Theme) ? (parsed.theme as Theme) : DEFAULTS.theme,
      mode: MODES.includes(parsed.mode as Mode) ? (parsed.mode as Mode) : DEFAULTS.mode,
      rerank: RERANKS.includes(parsed.rerank as Rerank) ? (parsed.rerank as Rerank) : DEFAULTS.rerank,
    };
  } catch {
    return { ...DEFAULTS };
  }
}

export function saveSettings(settings: Settings, storage: Storage | null = safeStorage()): void {
  try {
    storage?.setItem(KEY, JSON.stringify(settings));
  } catch {
    // Storage full or disabled: the choice still applies until restart.
  }
}

function safeStorage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

/** Whether searches and questions are reranked, as the Settings card says now. */
export function rerankSetting(): Rerank {
  return (current ??= loadSettings()).rerank;
}

/** Applies the theme: "system" follows the desktop's light/dark setting. */
export function applyTheme(theme: Theme): void {
  const root = document.documentElement;
  if (theme === "system") delete root.dataset.theme;
  else root.dataset.theme = theme;
}

/** Wires the Settings card and applies the stored settings to the page. */
export function initSettings(): Settings {
  const settings = loadSettings();
  current = settings;
  const themeSelect = byId<HTMLSelectElement>("settings-theme");
  const modeSelect = byId<HTMLSelectElement>("settings-mode");
  const rerankSelect = byId<HTMLSelectElement>("settings-rerank");
  const askMode = byId<HTMLSelectElement>("ask-mode");
  const searchMode = byId<HTMLSelectElement>("search-mode");

  themeSelect.value = settings.theme;
  modeSelect.value = settings.mode;
  rerankSelect.value = settings.rerank;
  applyTheme(settings.theme);
  askMode.value = settings.mode;
  searchMode.value = settings.mode;

  themeSelect.addEventListener("change", () => {
    settings.theme = themeSelect.value as Theme;
    applyTheme(settings.theme);
    saveSettings(settings);
  });
  modeSelect.addEventListener("change", () => {
    settings.mode = modeSelect.value as Mode;
    askMode.value = settings.mode;
    searchMode.value = settings.mode;
    saveSettings(settings);
  });
  rerankSelect.addEventListener("change", () => {
    settings.rerank = rerankSelect.value as Rerank;
    saveSettings(settings);
  });
  return settings;
}
