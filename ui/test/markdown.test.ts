import { describe, expect, it } from "vitest";
import { linkCitations, renderMarkdown } from "../src/markdown";

function html(text: string): HTMLDivElement {
  const div = document.createElement("div");
  div.append(renderMarkdown(text));
  return div;
}

describe("renderMarkdown", () => {
  it("keeps formatting but removes anything active", () => {
    const div = html(
      "**bold** and `code`\n\n<script>window.pwned = 1</script><img src=x onerror=alert(1)><iframe src=https://example.com></iframe><b onclick=alert(1)>x</b>",
    );
    expect(div.querySelector("strong")?.textContent).toBe("bold");
    expect(div.querySelector("code")?.textContent).toBe("code");
    expect(div.querySelector("script, img, iframe")).toBeNull();
    expect(div.innerHTML).not.toMatch(/onclick|onerror/);
    expect((window as { pwned?: number }).pwned).toBeUndefined();
  });

  it("turns links into plain text that cannot navigate", () => {
    const div = html("see [the site](https://example.com/page) and <a href=\"javascript:alert(1)\">this</a>");
    expect(div.querySelector("a")).toBeNull();
    const spans = Array.from(div.querySelectorAll("span.md-link"));
    expect(spans.map((s) => s.textContent)).toEqual(["the site", "this"]);
    expect(spans[0].getAttribute("title")).toBe("https://example.com/page");
  });

  it("renders tables from GitHub-flavoured Markdown", () => {
    const div = html("| a | b |\n|---|---|\n| 1 | 2 |");
    expect(div.querySelectorAll("td")).toHaveLength(2);
  });
});

describe("linkCitations", () => {
  const target = { known: (n: number) => n <= 2, cited: () => true };

  it("makes chips of known sources and marks unknown numbers", () => {
    const div = html("Water boils at 100 °C [1]. It freezes at 0 °C [2][7].");
    linkCitations(div, target);
    const chips = Array.from(div.querySelectorAll<HTMLElement>(".cite"));
    expect(chips.map((c) => c.textContent)).toEqual(["1", "2", "7"]);
    expect(chips[0].tagName).toBe("BUTTON");
    expect(chips[0].dataset.cite).toBe("1");
    expect(chips[2].tagName).toBe("SPAN");
    expect(chips[2].classList.contains("cite-unknown")).toBe(true);
    expect(div.textContent).toContain("Water boils at 100 °C 1.");
  });

  it("leaves code alone", () => {
    const div = html("Index with `xs[1]` in code [1]\n\n```\nys[2]\n```");
    linkCitations(div, target);
    expect(div.querySelectorAll(".cite")).toHaveLength(1);
    expect(div.querySelector("code")?.textContent).toBe("xs[1]");
    expect(div.querySelector("pre")?.textContent).toContain("ys[2]");
  });
});
