import { Channel, invoke, isTauri } from "@tauri-apps/api/core";

export type SearchMode = "hybrid" | "dense" | "bm25";

/** Error returned by every command: a stable code and a readable message. */
export interface CommandError {
  code: string;
  message: string;
  retryable?: boolean;
}

export type IngestEvent =
  | { kind: "queued"; path: string; name: string; folder: boolean }
  | { kind: "discovered"; files: number }
  | { kind: "started"; path: string; name: string; index: number; total: number }
  | { kind: "progress"; path: string; stage: string; done: number | null; total: number | null }
  | { kind: "indexed"; path: string; pages: number | null; chunks: number; warnings: string[]; needsOcr: boolean }
  | { kind: "unchanged"; path: string }
  | { kind: "skipped"; path: string; name: string; reason: string }
  | { kind: "failed"; path: string; reason: string }
  | { kind: "folderDone"; path: string; indexed: number; unchanged: number; skipped: number; failed: number };

export interface IngestSummary {
  indexed: number;
  unchanged: number;
  skipped: number;
  failed: number;
  chunks: number;
  seconds: number;
  /** The run was cancelled; files finished before that stay indexed. */
  cancelled: boolean;
}

export interface SearchRequest {
  query: string;
  mode: SearchMode;
  limit: number;
}

export interface LegRanks {
  dense: number | null;
  bm25: number | null;
}

export interface SearchHit {
  document: string;
  path: string | null;
  page: number | null;
  headings: string[];
  location: string | null;
  score: number;
  ranks: LegRanks;
  bm25Score: number | null;
  denseDistance: number | null;
  text: string;
}

export interface SearchResponse {
  hits: SearchHit[];
  tookMs: number;
}

export interface AskRequest {
  question: string;
  mode: SearchMode;
  conversationId: string | null;
}

export interface Source {
  n: number;
  document: string;
  path: string | null;
  page: number | null;
  /** Where the passage is, for people ("p. 3", "slide 4"); may be empty. */
  location: string;
  headings: string[];
  chunkId: string;
  charStart: number;
  charEnd: number;
  /** The passage the model was given. */
  text: string;
  /** Final retrieval score (fused in hybrid mode). */
  score: number;
  ranks: LegRanks;
  bm25Score: number | null;
  denseDistance: number | null;
  cited: boolean;
}

export type AskEvent =
  | { kind: "sources"; sources: Source[]; promptTokens: number }
  | { kind: "token"; text: string };

export interface AskResponse {
  answer: string;
  /** Every source given to the model; `cited` marks those the answer cites. */
  sources: Source[];
  promptTokens: number;
  generatedTokens: number;
  prefillMs: number;
  decodeMs: number;
  stopped: boolean;
  /** Nothing in the library matched, so no answer was written. */
  notInDocuments: boolean;
  tookMs: number;
  /** The conversation as stored after this answer. */
  conversation: ConversationSummary | null;
}

export interface ConversationSummary {
  id: string;
  title: string;
  createdAt: number;
  updatedAt: number;
  messages: number;
}

export interface StoredMessage {
  role: "user" | "assistant";
  text: string;
  sources: Source[];
  stopped: boolean;
  notInDocuments: boolean;
  createdAt: number;
}

export interface Conversation {
  id: string;
  title: string;
  createdAt: number;
  updatedAt: number;
  messages: StoredMessage[];
}

export interface DocumentInfo {
  id: string;
  title: string;
  path: string;
  fileName: string;
  format: string;
  pages: number;
  chunks: number;
  bytes: number;
  /** Seconds since the Unix epoch. */
  indexedAt: number;
  warnings: string[];
  needsOcr: boolean;
}

export interface ModelInfo {
  role: "embedder" | "llm";
  name: string;
  path: string;
  present: boolean;
  bytes: number;
  detail: string;
}

export interface ModelsStatus {
  modelsDir: string;
  dataDir: string;
  embedder: ModelInfo;
  llm: ModelInfo | null;
  maxContext: number;
  devicePreference: string;
}

export interface GpuField {
  label: string;
  value: string;
}

export interface GpuStatus {
  /** True when the models run on the CPU. */
  onCpu: boolean;
  /** The device in use, e.g. "CPU" or "cuda:0 · NVIDIA H200". */
  device: string;
  /** Why that device was chosen. */
  summary: string;
  /** Readings worth showing at a glance. */
  fields: GpuField[];
  /** The full multi-line report. */
  text: string;
}

export interface LibraryStats {
  documents: number;
  chunks: number;
}

export const inApp = isTauri();

export function asCommandError(err: unknown): CommandError {
  if (err && typeof err === "object" && "message" in err) {
    const e = err as { code?: unknown; message?: unknown };
    return {
      code: typeof e.code === "string" ? e.code : "error",
      message: String(e.message),
    };
  }
  return { code: "error", message: String(err) };
}

export function ingest(paths: string[], onEvent: (event: IngestEvent) => void): Promise<IngestSummary> {
  const channel = new Channel<IngestEvent>(onEvent);
  return invoke<IngestSummary>("ingest", { paths, onEvent: channel });
}

export function cancelIngest(): Promise<boolean> {
  return invoke<boolean>("cancel_ingest");
}

export function documents(): Promise<DocumentInfo[]> {
  return invoke<DocumentInfo[]>("documents");
}

export function deleteDocument(id: string): Promise<boolean> {
  return invoke<boolean>("delete_document", { id });
}

export function reindexDocument(id: string, onEvent: (event: IngestEvent) => void): Promise<IngestSummary> {
  const channel = new Channel<IngestEvent>(onEvent);
  return invoke<IngestSummary>("reindex_document", { id, onEvent: channel });
}

export function listConversations(): Promise<ConversationSummary[]> {
  return invoke<ConversationSummary[]>("list_conversations");
}

export function createConversation(question: string | null): Promise<Conversation> {
  return invoke<Conversation>("create_conversation", { title: null, question });
}

export function getConversation(id: string): Promise<Conversation> {
  return invoke<Conversation>("get_conversation", { id });
}

export function renameConversation(id: string, title: string): Promise<ConversationSummary> {
  return invoke<ConversationSummary>("rename_conversation", { id, title });
}

export function deleteConversation(id: string): Promise<boolean> {
  return invoke<boolean>("delete_conversation", { id });
}

export function modelsStatus(): Promise<ModelsStatus> {
  return invoke<ModelsStatus>("models_status");
}

export function search(request: SearchRequest): Promise<SearchResponse> {
  return invoke<SearchResponse>("search", { request });
}

export function ask(request: AskRequest, onEvent: (event: AskEvent) => void): Promise<AskResponse> {
  const channel = new Channel<AskEvent>(onEvent);
  return invoke<AskResponse>("ask", { request, onEvent: channel });
}

export function stopAnswer(): Promise<boolean> {
  return invoke<boolean>("stop_answer");
}

export function gpuStatus(): Promise<GpuStatus> {
  return invoke<GpuStatus>("gpu_status");
}

export function libraryStats(): Promise<LibraryStats> {
  return invoke<LibraryStats>("library_stats");
}
