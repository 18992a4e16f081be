/**
 * Collections against a fake backend that keeps them like the engine does:
 * the library screen filters by one, makes, renames and deletes them and
 * adds or removes the ticked documents; a conversation's scope is chosen in
 * its header and sent to the backend before its first question.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AskResponse, Collection, DocumentInfo } from "../src/api";
import { fakeBackend, loadPage, resetBackend, settle } from "./setup";

const doc = (id: string, title: string): DocumentInfo => ({
  id,
  title,
  path: `/docs/${title}`,
  fileName: title,
  format: "pdf",
  pages: 3,
  chunks: 12,
  bytes: 2048,
  indexedAt: Math.floor(Date.now() / 1000),
  warnings: [],
  needsOcr: false,
});

/** Collections kept as the engine keeps them: unique names whatever the case. */
function store(initial: Collection[]) {
  let list = initial.map((c) => ({ ...c, documentIds: [...c.documentIds] }));
  const find = (name: string) => {
    const c = list.find((x) => x.name.toLowerCase() === name.toLowerCase());
    if (!c) throw { code: "invalid_input", message: `there is no collection named \`${name}\``, retryable: false };
    return c;
  };
  return {
    list_collections: () => list.map((c) => ({ ...c, documentIds: [...c.documentIds] })),
    create_collection: (args: Record<string, unknown>) => {
      const name = String(args.name).trim();
      const clash = list.find((x) => x.name.toLowerCase() === name.toLowerCase());
      if (clash) return Promise.reject({ code: "invalid_input", message: `a collection named \`${clash.name}\` already exists`, retryable: false });
      const c = { name, documentIds: [] as string[], createdAt: 1 };
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
    add_to_collection: (args: Record<string, unknown>) => {
      const c = find(String(args.name));
      c.documentIds = [...new Set([...c.documentIds, ...(args.documentIds as string[])])].sort();
      return c;
    },
    remove_from_collection: (args: Record<string, unknown>) => {
      const c = find(String(args.name));
      c.documentIds = c.documentIds.filter((d) => !(args.documentIds as string[]).includes(d));
      return c;
    },
  };
}

const el = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const shownTitles = () =>
  Array.from(document.querySelectorAll("#documents-body tr")).map((r) => r.querySelector(".doc-title span")?.textContent);
const options = (id: string) => Array.from(el<HTMLSelectElement>(id).options).map((o) => o.textContent);

function tick(title: string): void {
  const row = Array.from(document.querySelectorAll<HTMLTableRowElement>("#documents-body tr")).find(
    (r) => r.querySelector(".doc-title span")?.textContent === title,
  );
  const box = row!.querySelector<HTMLInputElement>("input.doc-select")!;
  box.checked = !box.checked;
  box.dispatchEvent(new Event("change"));
}

function choose(id: string, value: string): void {
  const select = el<HTMLSelectElement>(id);
  select.value = value;
  select.dispatchEvent(new Event("change"));
}

beforeEach(() => {
  vi.resetModules();
  loadPage();
});

afterEach(() => resetBackend());

describe("collections in the library", () => {
  it("filters the table, adds and removes the ticked documents, and makes, renames and deletes collections", async () => {
    const calls = fakeBackend({
      documents: () => [doc("a1", "alpha.pdf"), doc("b2", "beta.pdf"), doc("c3", "gamma.pdf")],
      ...store([{ name: "Papers", documentIds: ["a1"], createdAt: 1 }]),
    });
    const library = await import("../src/library");
    await library.refreshDocuments();
    await settle();

    expect(options("library-collection")).toEqual(["All documents", "Papers (1)"]);
    expect(shownTitles()).toEqual(["alpha.pdf", "beta.pdf", "gamma.pdf"]);
    expect(document.querySelector('#documents-body tr[data-id="a1"] .doc-collections')?.textContent).toBe("In Papers");
    // Nothing ticked: no add or remove buttons.
    expect(el("collection-add").hidden).toBe(true);
    expect(el("collection-rename").hidden).toBe(true);

    choose("library-collection", "Papers");
    expect(shownTitles()).toEqual(["alpha.pdf"]);
    expect(el("collection-rename").hidden).toBe(false);

    // Tick two documents in the whole library and add them to Papers.
    choose("library-collection", "");
    tick("beta.pdf");
    tick("gamma.pdf");
    expect(el("selection-count").textContent).toBe("2 documents selected");
    expect(el("collection-add").hidden).toBe(false);
    expect(el("collection-remove").hidden).toBe(true);
    el<HTMLButtonElement>("collection-add").click();
    await settle();
    expect(calls.find((c) => c.cmd === "add_to_collection")?.args).toEqual({ name: "Papers", documentIds: ["b2", "c3"] });
    expect(options("library-collection")).toEqual(["All documents", "Papers (3)"]);
    expect(el("selection-count").textContent).toBe("Added 2 documents to Papers");
    expect(document.querySelectorAll("#documents-body input.doc-select:checked")).toHaveLength(0);

    // Within the collection, take one out again: it stays in the library.
    choose("library-collection", "Papers");
    tick("beta.pdf");
    expect(el("collection-remove").textContent).toBe("Remove from Papers");
    el<HTMLButtonElement>("collection-remove").click();
    await settle();
    expect(calls.find((c) => c.cmd === "remove_from_collection")?.args).toEqual({ name: "Papers", documentIds: ["b2"] });
    expect(shownTitles()).toEqual(["alpha.pdf", "gamma.pdf"]);
    expect(calls.some((c) => c.cmd === "delete_document")).toBe(false);

    // A clashing name is refused with the backend's reason.
    el<HTMLButtonElement>("collection-new").click();
    expect(el("collection-form").hidden).toBe(false);
    el<HTMLInputElement>("collection-name").value = "papers";
    el<HTMLFormElement>("collection-form").dispatchEvent(new Event("submit", { cancelable: true }));
    await settle();
    expect(el("notice").textContent).toBe("Could not create the collection: a collection named `Papers` already exists (invalid_input)");
    expect(el("collection-form").hidden).toBe(false);

    // A new name works; ticked documents go into the new collection.
    tick("alpha.pdf");
    el<HTMLInputElement>("collection-name").value = "  Reading  ";
    el<HTMLFormElement>("collection-form").dispatchEvent(new Event("submit", { cancelable: true }));
    await settle();
    expect(calls.find((c) => c.cmd === "create_collection" && c.args.name === "Reading")).toBeTruthy();
    expect(calls.filter((c) => c.cmd === "add_to_collection").at(-1)?.args).toEqual({ name: "Reading", documentIds: ["a1"] });
    expect(el("collection-form").hidden).toBe(true);
    expect(options("library-collection")).toEqual(["All documents", "Papers (2)", "Reading (1)"]);

    // Rename the collection shown, then delete it (asking twice).
    el<HTMLButtonElement>("collection-rename").click();
    expect(el<HTMLInputElement>("collection-name").value).toBe("Papers");
    el<HTMLInputElement>("collection-name").value = "Sources";
    el<HTMLFormElement>("collection-form").dispatchEvent(new Event("submit", { cancelable: true }));
    await settle();
    expect(calls.find((c) => c.cmd === "rename_collection")?.args).toEqual({ name: "Papers", newName: "Sources" });
    expect(el<HTMLSelectElement>("library-collection").value).toBe("Sources");
    const remove = el<HTMLButtonElement>("collection-delete");
    remove.click();
    expect(calls.some((c) => c.cmd === "delete_collection")).toBe(false);
    remove.click();
    await settle();
    expect(calls.find((c) => c.cmd === "delete_collection")?.args).toEqual({ name: "Sources" });
    expect(options("library-collection")).toEqual(["All documents", "Reading (1)"]);
    expect(shownTitles()).toEqual(["alpha.pdf", "beta.pdf", "gamma.pdf"]);
  });
});

const answer: AskResponse = {
  answer: "Water boils at 100 °C.",
  sources: [],
  promptTokens: 10,
  generatedTokens: 5,
  prefillMs: 1,
  decodeMs: 1,
  stopped: false,
  notInDocuments: false,
  tookMs: 5,
  conversation: null,
  checks: [],
  thinking: "",
};

describe("a conversation's scope", () => {
  it("is chosen in the header, set before the first question and restored when reopened", async () => {
    const conversation = { id: "conv-1", title: "Boiling", createdAt: 1, updatedAt: 1, messages: [], collection: null as string | null };
    const calls = fakeBackend({
      ...store([{ name: "Papers", documentIds: ["a1", "b2"], createdAt: 1 }]),
      create_conversation: () => conversation,
      set_conversation_collection: (args) => {
        conversation.collection = (args.collection as string | null) ?? null;
        return conversation;
      },
      get_conversation: () => conversation,
      list_conversations: () => [{ ...conversation, messages: 2 }],
      ask: () => answer,
    });
    const chat = await import("../src/chat");
    await chat.refreshScopes();
    const scope = el<HTMLSelectElement>("chat-scope");
    expect(scope.closest(".chat-head")).not.toBeNull();
    expect(options("chat-scope")).toEqual(["All documents", "Papers · 2 documents"]);
    expect(scope.value).toBe("");

    // Chosen before the conversation exists: applied when it is created, before the question.
    choose("chat-scope", "Papers");
    await settle();
    expect(calls.some((c) => c.cmd === "set_conversation_collection")).toBe(false);
    const input = el<HTMLTextAreaElement>("ask-input");
    input.value = "When does water boil?";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    await settle();
    const order = calls.map((c) => c.cmd).filter((c) => ["create_conversation", "set_conversation_collection", "ask"].includes(c));
    expect(order).toEqual(["create_conversation", "set_conversation_collection", "ask"]);
    expect(calls.find((c) => c.cmd === "set_conversation_collection")?.args).toEqual({ id: "conv-1", collection: "Papers" });
    expect(scope.dataset.scoped).toBe("true");

    // Back to all documents for this conversation.
    choose("chat-scope", "");
    await settle();
    expect(calls.filter((c) => c.cmd === "set_conversation_collection").at(-1)?.args).toEqual({ id: "conv-1", collection: null });
    expect(conversation.collection).toBeNull();

    // A new conversation starts unscoped; reopening restores the stored scope.
    conversation.collection = "Papers";
    chat.newConversationShortcut();
    expect(scope.value).toBe("");
    document.querySelector<HTMLButtonElement>(".conversation-open")!.click();
    await settle();
    expect(scope.value).toBe("Papers");

    // A scope the backend refuses leaves the conversation as it was, with the reason.
    fakeBackend({
      ...store([{ name: "Papers", documentIds: ["a1"], createdAt: 1 }]),
      set_conversation_collection: () => Promise.reject({ code: "invalid_input", message: "there is no collection named `Papers`", retryable: false }),
    });
    choose("chat-scope", "");
    await settle();
    expect(el("notice").textContent).toBe("Could not change what this conversation answers from: there is no collection named `Papers` (invalid_input)");
    expect(scope.value).toBe("Papers");
  });
});
