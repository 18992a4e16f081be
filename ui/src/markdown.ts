/**
 * Markdown from the model, made safe for the DOM: marked turns it into
 * HTML, DOMPurify removes anything active, links become plain text (a click
 * must never navigate the app's window away) and `[n]` citation markers
 * become chips.
 */
import DOMPurify from "dompurify";
import { marked } from "marked";

const FORBID_TAGS = ["img", "picture", "video", "audio", "source", "iframe", "object", "embed", "form", "input", "button", "textarea", "select", "style", "link", "meta", "svg", "math"];
const FORBID_ATTR = ["style", "class", "id", "srcset", "action", "formaction"];

/** Parses Markdown and returns a sanitized fragment. */
export function renderMarkdown(text: string): DocumentFragment {
  const html = marked.parse(text, { async: false, gfm: true, breaks: true });
  const fragment = DOMPurify.sanitize(html, {
    RETURN_DOM_FRAGMENT: true,
    FORBID_TAGS,
    FORBID_ATTR,
    ALLOW_DATA_ATTR: false,
  });
  for (const a of Array.from(fragment.querySelectorAll("a"))) {
    const span = document.createElement("span");
    span.className = "md-link";
    const href = a.getAttribute("href");
    if (href) span.title = href;
    span.append(...Array.from(a.childNodes));
    a.replaceWith(span);
  }
  return fragment;
}

/** What a citation chip needs to know about the sources. */
export interface CitationTarget {
  known: (n: number) => boolean;
  cited: (n: number) => boolean;
  /** Why the quote check doubts citation `n`, or null when it does not. */
  flagged?: (n: number) => string | null;
}

/**
 * Replaces `[n]` in the text nodes of `root` (outside code) with chips
 * carrying `data-cite`; unknown numbers are marked as unsupported.
 */
export function linkCitations(root: Node, target: CitationTarget): void {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const nodes: Text[] = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (parent && parent.closest("code, pre")) continue;
    const text = node as Text;
    if (/\[\d+\]/.test(text.data)) nodes.push(text);
  }
  for (const node of nodes) {
    const parts: Node[] = [];
    let last = 0;
    for (const m of node.data.matchAll(/\[(\d+)\]/g)) {
      const at = m.index ?? 0;
      if (at > last) parts.push(document.createTextNode(node.data.slice(last, at)));
      const n = Number(m[1]);
      const known = target.known(n);
      const chip = document.createElement(known ? "button" : "span");
      chip.className = known ? "cite" : "cite cite-unknown";
      chip.textContent = String(n);
      if (known) {
        (chip as HTMLButtonElement).type = "button";
        chip.dataset.cite = String(n);
        const doubt = target.flagged?.(n) ?? null;
        if (doubt !== null) {
          chip.classList.add("cite-flagged");
          chip.title = `Source ${n} may not support this: ${doubt}`;
          chip.setAttribute("aria-label", `Source ${n}, possibly unsupported`);
        } else {
          chip.title = `Show source ${n}`;
          chip.setAttribute("aria-label", `Source ${n}`);
        }
      } else {
        chip.title = "Unsupported: not one of the sources the model was given";
      }
      parts.push(chip);
      last = at + m[0].length;
    }
    if (last < node.data.length) parts.push(document.createTextNode(node.data.slice(last)));
    node.replaceWith(...parts);
  }
}
