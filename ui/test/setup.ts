/**
 * Shared test helpers: the app's real page (index.html) as the document, and
 * an IPC mock that records every command and can stream channel messages.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";

/** Loads the body of index.html so modules find their elements at import. */
export function loadPage(): void {
  const html = readFileSync(resolve(__dirname, "../index.html"), "utf8");
  const body = /<body[^>]*>([\s\S]*)<\/body>/i.exec(html);
  if (!body) throw new Error("index.html has no body");
  document.body.innerHTML = body[1].replace(/<script[\s\S]*?<\/script>/gi, "");
}

export interface Call {
  cmd: string;
  args: Record<string, unknown>;
}

type Handler = (args: Record<string, unknown>) => unknown;

/**
 * Pretends to be the Tauri backend: `isTauri()` is true and every `invoke`
 * goes to `handlers[cmd]`; a command with no handler fails like a command
 * the backend does not know. With `events`, `listen` works and `emit` from
 * `@tauri-apps/api/event` delivers to the page's listeners, standing in for
 * events the backend broadcasts.
 */
export function fakeBackend(handlers: Record<string, Handler>, options: { events?: boolean } = {}): Call[] {
  const calls: Call[] = [];
  (globalThis as { isTauri?: boolean }).isTauri = true;
  mockIPC((cmd, args) => {
    const a = (args ?? {}) as Record<string, unknown>;
    calls.push({ cmd, args: a });
    const handler = handlers[cmd];
    if (!handler) return Promise.reject({ code: "unknown_command", message: `no handler for ${cmd}` });
    return handler(a);
  }, { shouldMockEvents: options.events === true });
  return calls;
}

/** Sends a message on a channel the UI passed to a command. */
export function send(channel: unknown, message: unknown): void {
  (channel as { onmessage: (m: unknown) => void }).onmessage(message);
}

export function resetBackend(): void {
  clearMocks();
  delete (globalThis as { isTauri?: boolean }).isTauri;
}

/** Lets pending promises and zero-delay timers run. */
export async function settle(ms = 0): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, ms));
}
