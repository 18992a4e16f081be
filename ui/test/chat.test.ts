/**
 * The chat screen against a fake backend: a question streams an answer,
 * citations become chips that open the passage, "not in your documents" is
 * its own state, and a failing backend shows a readable error.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AskResponse, Source } from "../src/api";
import { fakeBackend, loadPage, resetBackend, send, settle } from "./setup";

const source = (n: number, text: string): Source => ({
  n,
  document: `doc${n}.pdf`,
  path: `/docs/doc${n}.pdf`,
  page: n + 2,
  location: `p. ${n + 2}`,
  headings: ["Results"],
  chunkId: `c${n}`,
  charStart: 10,
  charEnd: 10 + text.length,
  text,
  score: 0.03,
  ranks: { dense: n, bm25: n + 1 },
  bm25Score: 7.5,
  denseDistance: 0.41,
  rerankScore: n === 1 ? 2.5 : null,
  cited: n === 1,
});

const sources = [source(1, "Water boils at 100 degrees at sea level."), source(2, "Ice is frozen water.")];

function response(answer: string, extra: Partial<AskResponse> = {}): AskResponse {
  return {
    answer,
    sources,
    promptTokens: 321,
    generatedTokens: 9,
    prefillMs: 100,
    decodeMs: 800,
    stopped: false,
    notInDocuments: false,
    tookMs: 1200,
    conversation: null,
    checks: [],
    thinking: "",
    ...extra,
  };
}

const conversation = { id: "conv-1", title: "Boiling", createdAt: 1, updatedAt: 1, messages: [] };

async function ask(question: string): Promise<void> {
  const input = document.getElementById("ask-input") as HTMLTextAreaElement;
  input.value = question;
  input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
  await settle();
}

beforeEach(() => {
  vi.resetModules();
  loadPage();
});

afterEach(() => resetBackend());

describe("chat", () => {
  it("streams an answer, links citations and opens the cited passage", async () => {
    let streamed: ((answer: string) => void) | null = null;
    const calls = fakeBackend({
      create_conversation: () => conversation,
      list_conversations: () => [{ ...conversation, messages: 2 }],
      ask: (args) =>
        new Promise((resolve) => {
          send(args.onEvent, { kind: "sources", sources, promptTokens: 321 });
          for (const t of ["Water ", "boils at ", "100 °C [1]."]) send(args.onEvent, { kind: "token", text: t });
          streamed = (answer) => resolve(response(answer));
        }),
    });
    await import("../src/chat");
    await ask("When does water boil?");

    const turn = document.querySelector(".turn");
    expect(turn?.querySelector(".question")?.textContent).toBe("When does water boil?");
    expect(turn?.querySelector(".answer")?.getAttribute("aria-busy")).toBe("true");
    await settle(50);
    expect(turn?.querySelector(".answer-text")?.textContent).toContain("Water boils at 100 °C");
    expect(turn?.querySelector(".inspector summary")?.textContent).toContain("321 prompt tokens");

    streamed!("Water boils at 100 °C [1].");
    await settle();
    expect(turn?.querySelector(".answer")?.getAttribute("aria-busy")).toBe("false");
    expect(document.getElementById("chat-title")?.textContent).toBe("Boiling");
    const askCall = calls.find((c) => c.cmd === "ask");
    expect(askCall?.args.request).toEqual({ question: "When does water boil?", mode: "hybrid", rerank: "auto", conversationId: "conv-1", think: false });

    // Only the cited source is listed; the inspector shows both with their ranks.
    const listed = Array.from(turn!.querySelectorAll(".answer-sources .source-doc")).map((n) => n.textContent);
    expect(listed).toEqual(["doc1.pdf"]);
    expect(turn!.querySelectorAll(".inspector-table tbody tr")).toHaveLength(2);
    // The rerank column: the reranked passage's score, a dash for the other.
    const rerankCells = Array.from(turn!.querySelectorAll(".inspector-table tbody tr")).map((r) => r.children[5]?.textContent);
    expect(turn!.querySelectorAll(".inspector-table thead th")[5]?.textContent).toBe("Rerank");
    expect(rerankCells).toEqual(["2.5000", "–"]);

    const chip = turn!.querySelector<HTMLButtonElement>("button.cite");
    expect(chip?.textContent).toBe("1");
    chip!.click();
    const panel = document.getElementById("source-panel")!;
    expect(panel.hidden).toBe(false);
    expect(document.getElementById("source-doc")?.textContent).toBe("[1] doc1.pdf");
    expect(document.getElementById("source-where")?.textContent).toBe("p. 3");
    expect(document.querySelector("#source-passage mark")?.textContent).toBe(sources[0].text);

    document.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape" }));
    expect(panel.hidden).toBe(true);
  });

  it("marks citations the quote check doubts", async () => {
    fakeBackend({
      create_conversation: () => conversation,
      list_conversations: () => [],
      ask: () =>
        response("Water boils at 100 °C [1]. Ice is made of steel [2].", {
          checks: [
            { n: 1, sentence: "Water boils at 100 °C [1].", support: "supported", flagged: false, reason: "the source holds its words" },
            { n: 2, sentence: "Ice is made of steel [2].", support: "unsupported", flagged: true, reason: "\"steel\" is not in the source" },
          ],
        }),
    });
    await import("../src/chat");
    await ask("What is ice?");
    const chips = Array.from(document.querySelectorAll<HTMLButtonElement>(".turn button.cite"));
    expect(chips.map((c) => c.classList.contains("cite-flagged"))).toEqual([false, true]);
    expect(chips[1].title).toBe('Source 2 may not support this: "steel" is not in the source');
    expect(document.querySelector(".turn .answer-meta")?.textContent).toContain("1 citation may not be supported by the source");
  });

  it("says plainly when the library has nothing on the question", async () => {
    fakeBackend({
      create_conversation: () => conversation,
      list_conversations: () => [],
      ask: (args) => {
        send(args.onEvent, { kind: "sources", sources: [], promptTokens: 0 });
        return response("", { sources: [], notInDocuments: true, generatedTokens: 0 });
      },
    });
    await import("../src/chat");
    await ask("Who won the 1930 World Cup?");
    const found = document.querySelector(".turn .not-found");
    expect(found?.textContent).toContain("Not in your documents");
    expect(document.querySelector(".turn .answer-sources")?.hasAttribute("hidden")).toBe(true);
  });

  it("shows the backend's error with its code and keeps the question", async () => {
    fakeBackend({
      create_conversation: () => conversation,
      list_conversations: () => [],
      ask: () => Promise.reject({ code: "model_missing", message: "No answer model is installed" }),
    });
    await import("../src/chat");
    await ask("Anything?");
    const status = document.querySelector(".turn .answer-status");
    expect(status?.textContent).toBe("Couldn't answer: No answer model is installed (model_missing)");
    expect(status?.classList.contains("error")).toBe(true);
    expect(document.querySelector(".turn .question")?.textContent).toBe("Anything?");
    const submit = document.getElementById("ask-submit") as HTMLButtonElement;
    expect(submit.textContent).toBe("Ask");
  });

  it("exports the open conversation where the save dialog says", async () => {
    const calls = fakeBackend({
      create_conversation: () => conversation,
      list_conversations: () => [{ ...conversation, messages: 2 }],
      ask: () => response("Water boils at 100 °C [1]."),
      "plugin:dialog|save": () => "/home/me/Boiling.md",
      export_conversation: (args) => args.path,
    });
    const chat = await import("../src/chat");
    const button = document.getElementById("export-chat") as HTMLButtonElement;
    expect(button.hidden).toBe(true);
    await ask("When does water boil?");
    expect(button.hidden).toBe(false);
    button.click();
    await settle();
    const dialog = calls.find((c) => c.cmd === "plugin:dialog|save");
    expect((dialog?.args.options as { defaultPath: string }).defaultPath).toBe("Boiling.md");
    expect(calls.find((c) => c.cmd === "export_conversation")?.args).toEqual({ id: "conv-1", path: "/home/me/Boiling.md" });
    expect(document.getElementById("notice")?.textContent).toBe("Saved the conversation to /home/me/Boiling.md");

    // A cancelled dialog writes nothing.
    calls.length = 0;
    fakeBackend({ "plugin:dialog|save": () => null });
    await chat.exportCurrent();
    expect(calls.some((c) => c.cmd === "export_conversation")).toBe(false);
  });

  it("names export files from the title without path characters", async () => {
    fakeBackend({});
    const { exportFileName } = await import("../src/chat");
    expect(exportFileName("Q3 report: costs/benefits?")).toBe("Q3 report costs benefits.md");
    expect(exportFileName("  \n ")).toBe("Conversation.md");
    expect(exportFileName("x".repeat(200))).toHaveLength(83);
  });

  it("thinks first when asked: reasoning is folded above the answer and kept with the conversation", async () => {
    const calls = fakeBackend({
      create_conversation: () => conversation,
      list_conversations: () => [{ ...conversation, messages: 2 }],
      ask: (args) => {
        send(args.onEvent, { kind: "sources", sources, promptTokens: 321 });
        send(args.onEvent, { kind: "thinking", text: "The passage says " });
        send(args.onEvent, { kind: "thinking", text: "100 degrees." });
        const block = document.querySelector<HTMLDetailsElement>(".turn .thinking");
        expect(block?.hidden).toBe(false);
        expect(block?.querySelector("summary")?.textContent).toBe("Thinking…");
        send(args.onEvent, { kind: "token", text: "Water boils at 100 °C [1]." });
        return Promise.resolve(response("Water boils at 100 °C [1].", { thinking: "The passage says 100 degrees." }));
      },
    });
    await import("../src/chat");
    const think = document.getElementById("ask-think") as HTMLInputElement;
    think.checked = true;
    think.dispatchEvent(new Event("change"));
    await ask("When does water boil?");
    await settle(50);

    expect(calls.find((c) => c.cmd === "ask")?.args.request).toMatchObject({ think: true });
    const block = document.querySelector<HTMLDetailsElement>(".turn .thinking")!;
    expect(block.open).toBe(false);
    expect(block.querySelector("summary")?.textContent).toBe("Thought process · 5 words");
    expect(block.querySelector(".thinking-text")?.textContent).toBe("The passage says 100 degrees.");
    const answer = document.querySelector(".turn .answer-text")?.textContent ?? "";
    expect(answer).toContain("Water boils at 100 °C");
    expect(answer).not.toContain("passage says");
    expect(window.localStorage.getItem("lectern.think")).toBe("1");
  });

  it("clears the text shown so far when the answer starts again on another device", async () => {
    let restart: (() => void) | null = null;
    let finish: (() => void) | null = null;
    fakeBackend({
      create_conversation: () => conversation,
      list_conversations: () => [{ ...conversation, messages: 2 }],
      ask: (args) =>
        new Promise((resolve) => {
          send(args.onEvent, { kind: "sources", sources, promptTokens: 321 });
          send(args.onEvent, { kind: "thinking", text: "Half a thought" });
          for (const t of ["Steam ", "rises"]) send(args.onEvent, { kind: "token", text: t });
          restart = () => send(args.onEvent, { kind: "restarted", reason: "the GPU model worker stopped" });
          finish = () => {
            send(args.onEvent, { kind: "token", text: "Water boils " });
            resolve(response("Water boils at 100 °C [1]."));
          };
        }),
    });
    await import("../src/chat");
    await ask("When does water boil?");
    await settle(50);
    const turn = document.querySelector(".turn")!;
    expect(turn.querySelector(".answer-text")?.textContent).toContain("Steam rises");

    restart!();
    // Before the new answer arrives: the void text is gone, the reason shown.
    expect(turn.querySelector(".answer-text")?.textContent ?? "").not.toContain("Steam");
    expect(turn.querySelector<HTMLDetailsElement>(".thinking")?.hidden).toBe(true);
    expect(turn.querySelector(".answer-status")?.textContent).toBe("Starting the answer again: the GPU model worker stopped");
    finish!();
    await settle(50);
    const answer = turn.querySelector(".answer-text")?.textContent ?? "";
    expect(answer).toContain("Water boils at 100 °C");
    expect(answer).not.toContain("Steam");
  });

  it("shows no reasoning block for answers without one", async () => {
    fakeBackend({
      create_conversation: () => conversation,
      list_conversations: () => [{ ...conversation, messages: 2 }],
      ask: () => Promise.resolve(response("Water boils at 100 °C [1].")),
    });
    window.localStorage.removeItem("lectern.think");
    await import("../src/chat");
    await ask("When does water boil?");
    expect(document.querySelector<HTMLDetailsElement>(".turn .thinking")?.hidden).toBe(true);
  });

  it("lists stored conversations and reopens one with its citations", async () => {
    const stored = {
      ...conversation,
      messages: [
        { role: "user", text: "When does water boil?", sources: [], stopped: false, notInDocuments: false, createdAt: 1, checks: [] },
        {
          role: "assistant",
          text: "At 100 °C [1]. Also at 20 °C [2].",
          sources,
          stopped: false,
          notInDocuments: false,
          createdAt: 2,
          checks: [{ n: 2, sentence: "Also at 20 °C [2].", support: "unsupported", flagged: true, reason: "20 is not in the source" }],
          thinking: "Two sources disagree.",
        },
      ],
    };
    fakeBackend({
      list_conversations: () => [{ ...conversation, messages: 2 }],
      get_conversation: (args) => {
        expect(args.id).toBe("conv-1");
        return stored;
      },
    });
    const chat = await import("../src/chat");
    await chat.refreshConversations();
    const open = document.querySelector<HTMLButtonElement>("#conversation-list .conversation-open");
    expect(open?.textContent).toContain("Boiling");
    open!.click();
    await settle();
    expect(document.querySelector(".turn .question")?.textContent).toBe("When does water boil?");
    const chips = Array.from(document.querySelectorAll<HTMLButtonElement>(".turn button.cite"));
    expect(chips.map((c) => c.textContent)).toEqual(["1", "2"]);
    expect(chips.map((c) => c.classList.contains("cite-flagged"))).toEqual([false, true]);
    expect(document.querySelector(".turn .thinking-text")?.textContent).toBe("Two sources disagree.");
  });
});
