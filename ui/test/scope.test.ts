/**
 * Where search and answers look: the search screen's collection choice
 * follows collections made, renamed and deleted on the library screen, its
 * searches carry the chosen collection and fall back to all documents when
 * it disappears; the retrieval inspector names the scope of a live answer
 * and the one a stored answer was retrieved from.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AskResponse, Collection, DocumentInfo, SearchHit, Source, StoredMessage } from "../src/api";
import { fakeBackend, loadPage, resetBackend, send, settle } from "./setup";

const doc = (id: string, title: string): DocumentInfo => ({
  id,
  title,
  path: `/docs/${title}`,
  fileName: title,
  format: "md",
  pages: 1,
  chunks: 4,
  bytes: 1024,
  indexedAt: Math.floor(Date.now() / 1000),
  warnings: [],
  needsOcr: false,
});

/** Collections kept as the engine keeps them: listed by name, creation time kept on rename. */
function store(initial: Collection[]) {
  let list = initial.map((c) => ({ ...c, documentIds: [...c.documentIds] }));
  let clock = 100;
  const find = (name: string) => {
    const c = list.find((x) => x.name.toLowerCase() === name.toLowerCase());
    if (!c) throw { code: "invalid_input", message: `there is no collection named \`${name}\``, retryable: false };
    return c;
  };
  return {
    has: (name: string) => list.some((x) => x.name.toLowerCase() === name.toLowerCase()),
    drop: (name: string) => (list = list.filter((x) => x.name !== name)),
    handlers: {
      list_collections: () =>
        list.map((c) => ({ ...c, documentIds: [...c.documentIds] })).sort((a, b) => a.name.toLowerCase().localeCompare(b.name.toLowerCase())),
      create_collection: (args: Record<string, unknown>) => {
        const c = { name: String(args.name).trim(), documentIds: [] as string[], createdAt: clock++ };
        list.push(c);
        return c;
      },
      rename_collection: (args: Record<string, unknown>) => {
        const c = find(String(args.name));
        c.name = String(args.newName);
        return c;
      },
      delete_collection: (args: Record<string, unknown>) => {
        const c = find(String(args.name));
        list = list.filter((x) => x !== c);
        return c;
      },
    },
  };
}

const hit = (document: string): SearchHit => ({
  document,
  path: `/docs/${document}`,
  page: null,
  headings: [],
  location: null,
  score: 0.5,
  ranks: { dense: 1, bm25: 1 },
  bm25Score: 3.2,
  denseDistance: 0.3,
  rerankScore: null,
  text: `A passage of ${document}.`,
});

const el = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const options = (id: string) => Array.from(el<HTMLSelectElement>(id).options).map((o) => o.textContent);

function choose(id: string, value: string): void {
  const select = el<HTMLSelectElement>(id);
  select.value = value;
  select.dispatchEvent(new Event("change"));
}

async function submitCollectionName(name: string): Promise<void> {
  el<HTMLInputElement>("collection-name").value = name;
  el<HTMLFormElement>("collection-form").dispatchEvent(new Event("submit", { cancelable: true }));
  await settle();
}

async function searchFor(query: string): Promise<void> {
  el<HTMLInputElement>("search-input").value = query;
  el<HTMLFormElement>("search-form").dispatchEvent(new Event("submit", { cancelable: true }));
  await settle();
}

beforeEach(() => {
  vi.resetModules();
  loadPage();
});

afterEach(() => resetBackend());

describe("the search screen's collection", () => {
  it("is sent with the search and named in the result line", async () => {
    const collections = store([{ name: "Papers", documentIds: ["a1", "b2"], createdAt: 1 }]);
    const calls = fakeBackend({
      ...collections.handlers,
      search: (args) => {
        const request = args.request as { collection: string | null };
        return { hits: request.collection ? [hit("alpha.md")] : [hit("alpha.md"), hit("beta.md")], tookMs: 40.4 };
      },
    });
    await import("../src/search");
    await settle();
    expect(options("search-collection")).toEqual(["All documents", "Papers · 2 documents"]);
    expect(el<HTMLSelectElement>("search-collection").value).toBe("");

    choose("search-collection", "Papers");
    await searchFor("ownership");
    expect(calls.filter((c) => c.cmd === "search").at(-1)?.args.request).toEqual({
      query: "ownership",
      mode: "hybrid",
      rerank: "auto",
      limit: 20,
      collection: "Papers",
    });
    expect(el("search-meta").textContent).toBe("1 passage · hybrid · in “Papers” · 40 ms");
    expect(document.querySelectorAll("#search-results .hit")).toHaveLength(1);

    choose("search-collection", "");
    choose("search-mode", "bm25");
    await searchFor("ownership");
    expect((calls.filter((c) => c.cmd === "search").at(-1)?.args.request as { collection: unknown }).collection).toBeNull();
    expect(el("search-meta").textContent).toBe("2 passages · bm25 · in all documents · 40 ms");
  });

  it("follows collections made, renamed and deleted on the library screen", async () => {
    const collections = store([{ name: "Papers", documentIds: ["a1"], createdAt: 1 }]);
    const calls = fakeBackend({
      ...collections.handlers,
      documents: () => [doc("a1", "alpha.md"), doc("b2", "beta.md")],
      add_to_collection: () => Promise.reject({ code: "invalid_input", message: "not expected", retryable: false }),
      search: () => ({ hits: [], tookMs: 3 }),
    });
    const library = await import("../src/library");
    await import("../src/search");
    await library.refreshDocuments();
    await settle();
    expect(options("search-collection")).toEqual(["All documents", "Papers · 1 document"]);

    // Made in the library: listed for search at once.
    el<HTMLButtonElement>("collection-new").click();
    await submitCollectionName("Reading");
    expect(options("search-collection")).toEqual(["All documents", "Papers · 1 document", "Reading · 0 documents"]);

    // The chosen collection renamed in the library stays chosen, by its new name.
    choose("search-collection", "Papers");
    choose("library-collection", "Papers");
    el<HTMLButtonElement>("collection-rename").click();
    await submitCollectionName("Sources");
    expect(options("search-collection")).toEqual(["All documents", "Reading · 0 documents", "Sources · 1 document"]);
    expect(el<HTMLSelectElement>("search-collection").value).toBe("Sources");
    expect(el("notice").hidden).toBe(true);

    // Deleted while chosen: back to all documents, with a notice.
    el<HTMLButtonElement>("collection-delete").click();
    el<HTMLButtonElement>("collection-delete").click();
    await settle();
    expect(collections.has("Sources")).toBe(false);
    expect(options("search-collection")).toEqual(["All documents", "Reading · 0 documents"]);
    expect(el<HTMLSelectElement>("search-collection").value).toBe("");
    expect(el("notice").hidden).toBe(false);
    expect(el("notice").textContent).toBe("The collection “Sources” no longer exists; Search looks in all documents.");
    await searchFor("ownership");
    expect((calls.filter((c) => c.cmd === "search").at(-1)?.args.request as { collection: unknown }).collection).toBeNull();

    // Choosing again clears the notice; deleting another collection leaves the choice alone.
    choose("search-collection", "Reading");
    expect(el("notice").hidden).toBe(true);
    el<HTMLButtonElement>("collection-new").click();
    await submitCollectionName("Extra");
    choose("library-collection", "Extra");
    el<HTMLButtonElement>("collection-delete").click();
    el<HTMLButtonElement>("collection-delete").click();
    await settle();
    expect(options("search-collection")).toEqual(["All documents", "Reading · 0 documents"]);
    expect(el<HTMLSelectElement>("search-collection").value).toBe("Reading");
    expect(el("notice").hidden).toBe(true);
  });

  it("falls back to all documents once when the chosen collection disappears unannounced", async () => {
    const collections = store([{ name: "Papers", documentIds: ["a1"], createdAt: 1 }]);
    const calls = fakeBackend({
      ...collections.handlers,
      search: (args) => {
        const request = args.request as { collection: string | null };
        if (request.collection && !collections.has(request.collection)) {
          return Promise.reject({ code: "invalid_input", message: `there is no collection named \`${request.collection}\``, retryable: false });
        }
        return { hits: [hit("alpha.md"), hit("beta.md")], tookMs: 12 };
      },
    });
    await import("../src/search");
    await settle();
    choose("search-collection", "Papers");
    // Deleted behind the screen's back (no announcement reaches it).
    collections.drop("Papers");
    await searchFor("ownership");

    const searches = calls.filter((c) => c.cmd === "search").map((c) => (c.args.request as { collection: string | null }).collection);
    expect(searches).toEqual(["Papers", null]);
    expect(el<HTMLSelectElement>("search-collection").value).toBe("");
    expect(options("search-collection")).toEqual(["All documents"]);
    expect(el("notice").textContent).toBe("The collection “Papers” no longer exists; Search looks in all documents.");
    expect(el("search-meta").textContent).toBe("2 passages · hybrid · in all documents · 12 ms");
    expect(el("search-meta").classList.contains("error")).toBe(false);
    expect(el<HTMLButtonElement>("search-submit").disabled).toBe(false);
  });

  it("reports a failure in a collection that still exists, without retrying", async () => {
    const collections = store([{ name: "Papers", documentIds: ["a1"], createdAt: 1 }]);
    const calls = fakeBackend({
      ...collections.handlers,
      search: () => Promise.reject({ code: "io", message: "the index could not be read", retryable: true }),
    });
    await import("../src/search");
    await settle();
    choose("search-collection", "Papers");
    await searchFor("ownership");
    expect(calls.filter((c) => c.cmd === "search")).toHaveLength(1);
    expect(el("search-meta").textContent).toBe("Search failed: the index could not be read (io)");
    expect(el("search-meta").classList.contains("error")).toBe(true);
    expect(el<HTMLSelectElement>("search-collection").value).toBe("Papers");
  });
});

const source = (n: number, document: string): Source => ({
  n,
  document,
  path: `/docs/${document}`,
  page: null,
  location: "",
  headings: [],
  chunkId: `c${n}`,
  charStart: 0,
  charEnd: 20,
  text: `A passage of ${document}.`,
  score: 0.03,
  ranks: { dense: n, bm25: n },
  bm25Score: 3,
  denseDistance: 0.4,
  rerankScore: null,
  cited: n === 1,
});

const answer = (extra: Partial<AskResponse> = {}): AskResponse => ({
  answer: "Ownership moves the value [1].",
  sources: [source(1, "ownership.md")],
  promptTokens: 250,
  generatedTokens: 6,
  prefillMs: 1,
  decodeMs: 5,
  stopped: false,
  notInDocuments: false,
  tookMs: 10,
  conversation: null,
  checks: [],
  thinking: "",
  ...extra,
});

const stored = (role: "user" | "assistant", text: string, scope: StoredMessage["scope"] | undefined): StoredMessage => {
  const m: StoredMessage = {
    role,
    text,
    sources: role === "assistant" ? [source(1, "ownership.md")] : [],
    stopped: false,
    notInDocuments: false,
    createdAt: 1,
    checks: [],
    thinking: "",
    scope: scope ?? null,
  };
  // An answer from an older app has no scope field at all.
  if (scope === undefined) delete (m as Partial<StoredMessage>).scope;
  return m;
};

const summaries = () => Array.from(document.querySelectorAll(".turn .inspector summary")).map((s) => s.textContent);

describe("the retrieval inspector's scope", () => {
  it("names the collection a live answer is retrieved from, and all documents otherwise", async () => {
    const conversation = { id: "conv-1", title: "Moves", createdAt: 1, updatedAt: 1, messages: [] as StoredMessage[], collection: null as string | null };
    let finish: (() => void) | null = null;
    fakeBackend({
      ...store([{ name: "Rust book", documentIds: ["a1"], createdAt: 1 }]).handlers,
      create_conversation: () => conversation,
      set_conversation_collection: (args) => {
        conversation.collection = (args.collection as string | null) ?? null;
        return conversation;
      },
      list_conversations: () => [{ ...conversation, messages: 2 }],
      ask: (args) =>
        new Promise((resolve) => {
          send(args.onEvent, { kind: "sources", sources: [source(1, "ownership.md")], promptTokens: 250 });
          finish = () => resolve(answer());
        }),
    });
    const chat = await import("../src/chat");
    await chat.refreshScopes();
    choose("chat-scope", "Rust book");
    const input = el<HTMLTextAreaElement>("ask-input");
    input.value = "What does a move do?";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    await settle();
    // While the answer is written the inspector already says where it looked.
    expect(summaries()).toEqual(["Retrieval · hybrid · in “Rust book” · 1 passage · 250 prompt tokens"]);
    const scope = document.querySelector<HTMLElement>(".turn .inspector-scope");
    expect(scope?.dataset.scope).toBe("Rust book");
    finish!();
    await settle();
    expect(summaries()).toEqual(["Retrieval · hybrid · in “Rust book” · 1 passage · 250 prompt tokens"]);

    // The same conversation back on the whole library.
    choose("chat-scope", "");
    await settle();
    input.value = "And a copy?";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    await settle();
    finish!();
    await settle();
    expect(summaries()[1]).toBe("Retrieval · hybrid · in all documents · 1 passage · 250 prompt tokens");
    expect(document.querySelectorAll<HTMLElement>(".turn .inspector-scope")[1].dataset.scope).toBe("");
  });

  it("shows the scope a stored answer was retrieved from, not the conversation's current one", async () => {
    const conversation = {
      id: "conv-2",
      title: "Earlier",
      createdAt: 1,
      updatedAt: 1,
      // Asked in "Papers", then on the whole library, and once by an older app.
      messages: [
        stored("user", "First?", undefined),
        stored("assistant", "One [1].", { collection: "Papers" }),
        stored("user", "Second?", undefined),
        stored("assistant", "Two [1].", { collection: null }),
        stored("user", "Third?", undefined),
        stored("assistant", "Three [1].", undefined),
      ],
      collection: "Reading" as string | null,
    };
    fakeBackend({
      ...store([{ name: "Reading", documentIds: ["a1"], createdAt: 1 }]).handlers,
      get_conversation: () => conversation,
      list_conversations: () => [{ ...conversation, messages: conversation.messages.length }],
    });
    const chat = await import("../src/chat");
    await chat.refreshConversations();
    await settle();
    document.querySelector<HTMLButtonElement>(".conversation-open")!.click();
    await settle();
    expect(el<HTMLSelectElement>("chat-scope").value).toBe("Reading");
    expect(summaries()).toEqual([
      "Retrieval · in “Papers” · 1 passage",
      "Retrieval · in all documents · 1 passage",
      "Retrieval · scope not recorded · 1 passage",
    ]);
  });

  it("follows the open conversation when its collection is renamed elsewhere", async () => {
    const collections = store([{ name: "Papers", documentIds: ["a1"], createdAt: 1 }]);
    const conversation = { id: "conv-3", title: "Scoped", createdAt: 1, updatedAt: 1, messages: [] as StoredMessage[], collection: "Papers" as string | null };
    fakeBackend({
      ...collections.handlers,
      get_conversation: () => conversation,
      list_conversations: () => [{ ...conversation, messages: 0 }],
    });
    const chat = await import("../src/chat");
    const shell = await import("../src/shell");
    await chat.refreshConversations();
    await settle();
    document.querySelector<HTMLButtonElement>(".conversation-open")!.click();
    await settle();
    expect(el<HTMLSelectElement>("chat-scope").value).toBe("Papers");
    // The engine moves conversations with a renamed collection.
    collections.handlers.rename_collection({ name: "Papers", newName: "Sources" });
    conversation.collection = "Sources";
    shell.libraryChanged();
    await settle();
    expect(el<HTMLSelectElement>("chat-scope").value).toBe("Sources");
    expect(options("chat-scope")).toEqual(["All documents", "Sources · 1 document"]);
  });
});
