/**
 * The backend as the screens use it. Types and command calls come from
 * `bindings.ts`, generated from the Rust commands (a test fails when it is
 * stale); this module gives them the names the screens use and turns a
 * command's error result into a rejected promise carrying a `CommandError`.
 */
import { Channel, isTauri } from "@tauri-apps/api/core";
import type { UnlistenFn } from "@tauri-apps/api/event";
import {
  commands,
  events,
  type AnswerUpdate,
  type AnswerView,
  type CatalogModelView,
  type CatalogView,
  type CheckView,
  type CollectionView,
  type DownloadUpdate,
  type CommandError,
  type ConversationSummaryView,
  type ConversationView,
  type DocumentView,
  type Field,
  type FolderStatus,
  type GpuAlert,
  type GpuPanel,
  type GpuReading,
  type GpuTick,
  type GpuView,
  type HostReading,
  type Hit,
  type IngestSummary,
  type IngestUpdate,
  type LegRanks,
  type LibraryStats,
  type MessageView,
  type Mode,
  type ModelView,
  type ModelsView,
  type PdfFile,
  type Question,
  type Rerank,
  type ResidentView,
  type SearchQuery,
  type SearchResults,
  type Source,
} from "./bindings";

export type {
  CommandError,
  IngestSummary,
  LegRanks,
  LibraryStats,
  Source,
};
export type SearchMode = Mode;
export type RerankSetting = Rerank;
export type IngestEvent = IngestUpdate;
export type SearchRequest = SearchQuery;
export type SearchHit = Hit;
export type SearchResponse = SearchResults;
export type AskRequest = Question;
export type AskEvent = AnswerUpdate;
export type AskResponse = AnswerView;
export type ConversationSummary = ConversationSummaryView;
export type StoredMessage = MessageView;
export type Conversation = ConversationView;
export type DocumentInfo = DocumentView;
export type Collection = CollectionView;
export type ModelInfo = ModelView;
export type ModelsStatus = ModelsView;
export type GpuField = Field;
export type GpuStatus = GpuView;
export type { CatalogModelView, CatalogView, CheckView, DownloadUpdate };
export type { FolderStatus, GpuAlert, GpuPanel, GpuReading, GpuTick, HostReading, PdfFile, ResidentView };

export const inApp = isTauri();

export function asCommandError(err: unknown): CommandError {
  if (err && typeof err === "object" && "message" in err) {
    const e = err as { code?: unknown; message?: unknown; retryable?: unknown };
    return {
      code: typeof e.code === "string" ? e.code : "error",
      message: String(e.message),
      retryable: e.retryable === true,
    };
  }
  return { code: "error", message: String(err), retryable: false };
}

type Result<T> = { status: "ok"; data: T } | { status: "error"; error: CommandError };

/** The data of a command's result; its error becomes a rejection. */
async function unwrap<T>(pending: Promise<Result<T>>): Promise<T> {
  const result = await pending;
  if (result.status === "error") throw asCommandError(result.error);
  return result.data;
}

export function ingest(paths: string[], onEvent: (event: IngestEvent) => void): Promise<IngestSummary> {
  return unwrap(commands.ingest(paths, new Channel<IngestEvent>(onEvent)));
}

export function cancelIngest(): Promise<boolean> {
  return unwrap(commands.cancelIngest());
}

export function documents(): Promise<DocumentInfo[]> {
  return unwrap(commands.documents());
}

export function deleteDocument(id: string): Promise<boolean> {
  return unwrap(commands.deleteDocument(id));
}

export function reindexDocument(id: string, onEvent: (event: IngestEvent) => void): Promise<IngestSummary> {
  return unwrap(commands.reindexDocument(id, new Channel<IngestEvent>(onEvent)));
}

export function listConversations(): Promise<ConversationSummary[]> {
  return unwrap(commands.listConversations());
}

export function createConversation(question: string | null): Promise<Conversation> {
  return unwrap(commands.createConversation(null, question));
}

export function getConversation(id: string): Promise<Conversation> {
  return unwrap(commands.getConversation(id));
}

export function renameConversation(id: string, title: string): Promise<ConversationSummary> {
  return unwrap(commands.renameConversation(id, title));
}

export function deleteConversation(id: string): Promise<boolean> {
  return unwrap(commands.deleteConversation(id));
}

/** Writes a conversation as Markdown at `path`; resolves to the path written. */
export function exportConversation(id: string, path: string): Promise<string> {
  return unwrap(commands.exportConversation(id, path));
}

export function modelCatalog(): Promise<CatalogView> {
  return unwrap(commands.modelCatalog());
}

/** Downloads a catalog model; resolves to where it was installed. */
export function downloadModel(id: string, onEvent: (event: DownloadUpdate) => void): Promise<string> {
  return unwrap(commands.downloadModel(id, new Channel<DownloadUpdate>(onEvent)));
}

export function cancelDownload(): Promise<boolean> {
  return unwrap(commands.cancelDownload());
}

export function modelsStatus(): Promise<ModelsStatus> {
  return unwrap(commands.modelsStatus());
}

export function search(request: SearchRequest): Promise<SearchResponse> {
  return unwrap(commands.search(request));
}

export function ask(request: AskRequest, onEvent: (event: AskEvent) => void): Promise<AskResponse> {
  return unwrap(commands.ask(request, new Channel<AskEvent>(onEvent)));
}

export function stopAnswer(): Promise<boolean> {
  return unwrap(commands.stopAnswer());
}

export function gpuStatus(): Promise<GpuStatus> {
  return unwrap(commands.gpuStatus());
}

export function libraryStats(): Promise<LibraryStats> {
  return unwrap(commands.libraryStats());
}

/** The GPU panel's opening state: device, recent readings, resident models. */
export function gpuPanel(): Promise<GpuPanel> {
  return unwrap(commands.gpuPanel());
}

/** Calls `cb` with every GPU and host reading broadcast from now on. */
export function onGpuTick(cb: (tick: GpuTick) => void): Promise<UnlistenFn> {
  return events.gpuTick.listen((e) => cb(e.payload));
}

/** Calls `cb` with every GPU alert (threshold crossings, device loss, model moves). */
export function onGpuAlert(cb: (alert: GpuAlert) => void): Promise<UnlistenFn> {
  return events.gpuAlert.listen((e) => cb(e.payload));
}

export function watchedFolders(): Promise<FolderStatus[]> {
  return unwrap(commands.watchedFolders());
}

export function addWatchedFolder(path: string): Promise<FolderStatus[]> {
  return unwrap(commands.addWatchedFolder(path));
}

export function removeWatchedFolder(path: string): Promise<FolderStatus[]> {
  return unwrap(commands.removeWatchedFolder(path));
}

/** Calls `cb` whenever a watched folder's state changes. */
export function onFolderStatus(cb: (status: FolderStatus) => void): Promise<UnlistenFn> {
  return events.folderStatus.listen((e) => cb(e.payload));
}

/** The PDF file of a library document (by id; the backend serves nothing else). */
export async function documentPdf(id: string): Promise<Uint8Array> {
  const file = await unwrap(commands.documentPdf(id));
  const raw = atob(file.base64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

export function listCollections(): Promise<Collection[]> {
  return unwrap(commands.listCollections());
}

export function createCollection(name: string): Promise<Collection> {
  return unwrap(commands.createCollection(name));
}

export function renameCollection(name: string, newName: string): Promise<Collection> {
  return unwrap(commands.renameCollection(name, newName));
}

export function deleteCollection(name: string): Promise<Collection> {
  return unwrap(commands.deleteCollection(name));
}

export function addToCollection(name: string, documentIds: string[]): Promise<Collection> {
  return unwrap(commands.addToCollection(name, documentIds));
}

export function removeFromCollection(name: string, documentIds: string[]): Promise<Collection> {
  return unwrap(commands.removeFromCollection(name, documentIds));
}

/** Scopes a conversation to a collection, or to the whole library with null. */
export function setConversationCollection(id: string, collection: string | null): Promise<Conversation> {
  return unwrap(commands.setConversationCollection(id, collection));
}
