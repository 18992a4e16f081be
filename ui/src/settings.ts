/**
 * Preferences kept in the webview's storage: the colour theme and the
 * retrieval mode new questions and searches start with. Missing or
 * unreadable storage falls back to the defaults.
 */
import { byId } from "./dom";

export type Theme = "system" | "light" | "dark";
export type Mode = "hybrid" | "dense" | "bm25";

export interface Settings {
  theme: Theme;
  mode: Mode;
}

export const DEFAULTS: Settings = { theme: "system", mode: "hybrid" };
const KEY = "lectern.settings";
const THEMES: Theme[] = ["system", "light", "dark"];
const MODES: Mode[] = ["hybrid", "dense", "bm25"];

/** Reads the stored settings, keeping only values this version knows. */
export function loadSettings(storage: Storage | null = safeStorage()): Settings {
  try {
    const raw = storage?.getItem(KEY);
    if (!raw) return { ...DEFAULTS };
    const parsed = JSON.parse(raw) as Partial<Record<keyof Settings, unknown>>;
    return {
      theme: THEMES.includes(parsed.theme as Theme) ? (parsed.theme as Theme) : DEFAULTS.theme,
      mode: MODES.includes(parsed.mode as Mode) ? (parsed.mode as Mode) : DEFAULTS.mode,
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

/** Applies the theme: "system" follows the desktop's light/dark setting. */
export function applyTheme(theme: Theme): void {
  const root = document.documentElement;
  if (theme === "system") delete root.dataset.theme;
  else root.dataset.theme = theme;
}

/** Wires the Settings card and applies the stored settings to the page. */
export function initSettings(): Settings {
  const settings = loadSettings();
  const themeSelect = byId<HTMLSelectElement>("settings-theme");
  const modeSelect = byId<HTMLSelectElement>("settings-mode");
  const askMode = byId<HTMLSelectElement>("ask-mode");
  const searchMode = byId<HTMLSelectElement>("search-mode");

  themeSelect.value = settings.theme;
  modeSelect.value = settings.mode;
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
  return settings;
}
