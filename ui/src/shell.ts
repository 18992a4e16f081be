/** Things every screen shares: the notice bar, error text and formatting. */
import type { CommandError } from "./api";
import { byId, formatCount, h } from "./dom";

const notice = byId("notice");

/** A button in the notice bar that leads to what fixes the problem. */
export interface NoticeAction {
  label: string;
  run: () => void;
}

export function showNotice(message: string, source = "app", action?: NoticeAction): void {
  notice.replaceChildren(message);
  if (action) {
    const button = h("button", { class: "notice-action", text: action.label, attrs: { type: "button" } });
    button.addEventListener("click", action.run);
    notice.append(" ", button);
  }
  notice.dataset.source = source;
  notice.hidden = false;
}

export function hideNotice(source?: string): void {
  if (source !== undefined && notice.dataset.source !== source) return;
  notice.hidden = true;
  notice.textContent = "";
}

export function errorText(err: CommandError): string {
  return err.code && err.code !== "error" ? `${err.message} (${err.code})` : err.message;
}

export function plural(n: number, one: string, many: string): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

const units = ["B", "KB", "MB", "GB", "TB"];

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A Unix time (seconds) for people: "5 min ago", or the date. */
export function formatWhen(seconds: number): string {
  if (!seconds) return "–";
  const ago = Date.now() / 1000 - seconds;
  if (ago < 60) return "just now";
  if (ago < 3600) return `${Math.floor(ago / 60)} min ago`;
  if (ago < 86400) return `${Math.floor(ago / 3600)} h ago`;
  return dateTime.format(new Date(seconds * 1000));
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return `${m} min ${s} s`;
}

/** Screens announce changes the others care about through these. */
export const bus = new EventTarget();
export const LIBRARY_CHANGED = "library-changed";

export function libraryChanged(): void {
  bus.dispatchEvent(new Event(LIBRARY_CHANGED));
}
