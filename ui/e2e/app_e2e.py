#!/usr/bin/env python3
"""End-to-end test of the Lectern desktop app in its real webview.

Drives the built app through tauri-driver, which starts WebKitWebDriver (the
native driver on Linux) behind it with the W3C WebDriver protocol, using only the standard
library. Run it under a display (scripts/app-e2e.sh uses Xvfb). The flows:

1. start on an empty data folder and see the empty states;
2. add the Markdown documents of the shared eval set through the path form
   (the same ingest handler a drop on the window uses) and see them indexed
   in the library table;
3. ask a question with the tiny test model, see tokens stream, sources and
   the retrieval inspector appear, open a source and read its passage;
4. make a collection of one document on the library screen, ask in a
   conversation scoped to it and see every source come from that document
   and the inspector name the scope; search in the collection (hits from
   that document only), then in all documents (hits from others too);
5. delete a document and see it leave the library;
6. restart the app on the same data folder and find the conversations
   again, the scoped answer still naming its scope.

Along the way it checks that the app serves pdf.js's bundled CMaps and
standard fonts to its own page (the request pdf.js makes, under the app's
content security policy), and that the "Rerank results" setting reaches the
engine: off leaves the passages unreranked, on reranks them.

Screenshots of each screen go to the output folder, with the log of the
drivers and the app (webdriver.log). tauri-driver, WebKitWebDriver and the
app run in a process group of their own, which is killed however the run ends
(including SIGTERM from a timeout); its id is written to --pgid-file so a
caller can make sure of it after a SIGKILL.
"""

import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


class Failure(Exception):
    pass


class Stopped(BaseException):
    """A signal asked the test to stop."""


def on_signal(signum, _frame):
    raise Stopped(f"stopped by {signal.Signals(signum).name}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc, grace=5.0):
    """Ends the driver and everything it started (the app), TERM then KILL."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_alive(proc.pid):
            proc.poll()
            time.sleep(0.1)
        if not group_alive(proc.pid):
            break
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # The driver itself may be a zombie until reaped; look for live members.
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_for(what, check, timeout=60.0, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Failure:
            last = None
        if last:
            return last
        time.sleep(interval)
    raise Failure(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Driver:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.session = None

    def request(self, method, path, body=None, timeout=120):
        data = None if body is None else json.dumps(body).encode()
        # tauri-driver forwards each request over a pooled connection to
        # WebKitWebDriver; when that connection was closed under it, the
        # request fails before it reaches the driver and is sent again.
        for attempt in range(3):
            req = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as r:
                    return json.loads(r.read() or b"{}").get("value")
            except urllib.error.HTTPError as e:
                raise Failure(f"WebDriver {method} {path}: {e.code} {e.read()[:400]!r}") from None
            except (ConnectionResetError, http.client.RemoteDisconnected, urllib.error.URLError) as e:
                if isinstance(e, urllib.error.URLError) and not isinstance(e.reason, ConnectionResetError):
                    raise
                if attempt == 2:
                    raise Failure(f"WebDriver {method} {path}: {e}") from None
                print(f"  (driver connection dropped on {method} {path}: {e}; sending again)", flush=True)
                time.sleep(0.2)

    def start(self, binary):
        caps = {"capabilities": {"alwaysMatch": {"tauri:options": {"application": str(binary), "args": []}}}}
        self.session = self.request("POST", "/session", caps)["sessionId"]

    def stop(self):
        if self.session:
            try:
                self.request("DELETE", f"/session/{self.session}", timeout=20)
            except (Failure, OSError):
                pass
            self.session = None

    def js(self, script, *args):
        return self.request("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})

    def js_async(self, script, *args):
        """Runs `script`, which calls its last argument with the result."""
        return self.request("POST", f"/session/{self.session}/execute/async", {"script": script, "args": list(args)})

    def screenshot(self, path):
        # Let the webview paint what the last script changed.
        time.sleep(0.5)
        png = self.request("GET", f"/session/{self.session}/screenshot")
        Path(path).write_bytes(base64.b64decode(png))
        print(f"  screenshot {path}")

    def text(self, selector):
        return self.js("const n = document.querySelector(arguments[0]); return n ? n.textContent : null;", selector)

    def click(self, selector):
        ok = self.js("const n = document.querySelector(arguments[0]); if (!n) return false; n.click(); return true;", selector)
        if not ok:
            raise Failure(f"nothing to click at {selector}")

    def count(self, selector):
        return self.js("return document.querySelectorAll(arguments[0]).length;", selector)

    def visible(self, selector):
        return self.js("const n = document.querySelector(arguments[0]); return !!n && !n.closest('[hidden]');", selector)


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}")
    if not ok:
        raise Failure(name)


def submit_path(d, path):
    d.js("""const i = document.getElementById('path-input'); i.value = arguments[0];
            document.getElementById('path-form').requestSubmit();""", path)


def ask(d, question):
    d.js("""const i = document.getElementById('ask-input'); i.value = arguments[0];
            document.getElementById('ask-form').requestSubmit();""", question)


def app_ready(d):
    return d.js("return !!window.__TAURI_INTERNALS__ && /document/.test(document.getElementById('topbar-stats').textContent);")


def fetch_bytes(d, path):
    """Fetches `path` from the app's own origin the way pdf.js fetches its
    data files (XMLHttpRequest, as the page is not http); [status, bytes]."""
    return d.js_async("""const done = arguments[arguments.length - 1];
        const x = new XMLHttpRequest();
        x.open('GET', new URL(arguments[0], document.baseURI).href);
        x.responseType = 'arraybuffer';
        x.onload = () => done([x.status, x.response ? x.response.byteLength : 0]);
        x.onerror = () => done(['refused', 0]);
        x.send();""", path)


def set_rerank(d, value):
    d.js("""const s = document.getElementById('settings-rerank'); s.value = arguments[0];
            s.dispatchEvent(new Event('change'));""", value)


def last_inspector_rerank_cells(d):
    """The rerank column of the last answer's inspector: numbers or '–'."""
    return d.js("""const i = [...document.querySelectorAll('.answer .inspector')].pop();
        return i ? [...i.querySelectorAll('tbody tr')].map(r => r.children[5].textContent) : [];""")


def choose(d, select_id, value):
    d.js("""const s = document.getElementById(arguments[0]); s.value = arguments[1];
            s.dispatchEvent(new Event('change'));""", select_id, value)


def search_for(d, query):
    d.js("""const i = document.getElementById('search-input'); i.value = arguments[0];
            document.getElementById('search-form').requestSubmit();""", query)


def search_done(d, scope_text):
    """The hits' paths once the result line names `scope_text`, else None."""
    return d.js("""const m = document.getElementById('search-meta').textContent;
        if (!m.includes(arguments[0]) || document.getElementById('search-submit').disabled) return null;
        return [...document.querySelectorAll('#search-results .hit-doc')].map(n => n.title);""", scope_text)


COLLECTION = "Strings only"
COLLECTION_DOC = "rust-book-ch08-02-strings.md"


def collections_flow(d, out):
    """A collection of one document scopes a conversation and a search."""
    d.click("#tab-library")
    wait_for("the table", lambda: d.count("#documents-body tr") > 1, 30)
    doc_path = d.js("""const r = [...document.querySelectorAll('#documents-body tr')]
            .find(r => r.querySelector('.doc-path').textContent.endsWith(arguments[0]));
        if (!r) return null;
        r.querySelector('input.doc-select').click();
        return r.querySelector('.doc-path').textContent;""", COLLECTION_DOC)
    check("the document to collect is in the library", bool(doc_path), COLLECTION_DOC)
    d.click("#collection-new")
    d.js("""document.getElementById('collection-name').value = arguments[0];
            document.getElementById('collection-form').requestSubmit();""", COLLECTION)
    wait_for("the collection with its document in the library", lambda: d.js(
        "return [...document.getElementById('library-collection').options].some(o => o.textContent === arguments[0]);",
        f"{COLLECTION} (1)"), 30)

    # A new conversation scoped to it: every passage comes from that document.
    d.click("#tab-chat")
    d.click("#new-chat")
    wait_for("the collection in the chat scope", lambda: d.js(
        "return [...document.getElementById('chat-scope').options].some(o => o.value === arguments[0]);", COLLECTION), 30)
    choose(d, "chat-scope", COLLECTION)
    ask(d, "How do you concatenate two strings?")
    wait_for("the scoped answer", lambda: d.count(".answer") == 1, 30)
    wait_answer_done(d)
    paths = d.js("return [...document.querySelectorAll('.answer .inspector tbody .doc-cell')].map(c => c.title);")
    check("the scoped answer has passages", len(paths) > 0, paths)
    check("every passage of the scoped answer is from the collection's document",
          all(p == doc_path for p in paths), paths)
    scope = d.js("""const s = document.querySelector('.answer .inspector-scope');
        return s ? [s.dataset.scope, s.textContent] : null;""")
    check("the inspector names the collection", scope == [COLLECTION, f"in \u201c{COLLECTION}\u201d"], scope)
    check("the conversation header shows the scope",
          d.js("return document.getElementById('chat-scope').value;") == COLLECTION)
    d.js("const i = document.querySelector('.answer .inspector'); i.open = true; i.scrollIntoView({block: 'end'});")
    d.screenshot(out / "collections.png")

    # Search in the collection, then in all documents.
    d.click("#tab-search")
    wait_for("the collection on the search screen", lambda: d.js(
        "return [...document.getElementById('search-collection').options].some(o => o.value === arguments[0]);", COLLECTION), 30)
    choose(d, "search-collection", COLLECTION)
    search_for(d, "string concatenation and ownership")
    hits = wait_for("scoped search results", lambda: search_done(d, f"in \u201c{COLLECTION}\u201d"), 60)
    check("every hit of the scoped search is from the collection's document", all(p == doc_path for p in hits), hits)
    d.screenshot(out / "collections-search.png")
    choose(d, "search-collection", "")
    search_for(d, "string concatenation and ownership")
    hits = wait_for("search results in all documents", lambda: search_done(d, "in all documents"), 60)
    check("searching all documents finds other documents too", any(p != doc_path for p in hits), hits)


def wait_answer_done(d):
    wait_for("the answer to finish", lambda: d.js("const a = document.querySelectorAll('.answer'); return a.length > 0 && a[a.length-1].getAttribute('aria-busy') === 'false';"), 600, 0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", required=True, type=Path)
    ap.add_argument("--docs", required=True, type=Path, help="folder of documents to add")
    ap.add_argument("--out", required=True, type=Path, help="screenshots go here")
    ap.add_argument("--dist", type=Path, default=Path(__file__).resolve().parents[1] / "dist",
                    help="the built UI the app embeds")
    ap.add_argument("--port", type=int, default=0, help="tauri-driver's port (default: a free one)")
    ap.add_argument("--tauri-driver", default="tauri-driver", help="the tauri-driver binary")
    ap.add_argument("--pgid-file", type=Path, help="write the driver's process group id here")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    started = time.monotonic()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    env = dict(os.environ, TAURI_WEBVIEW_AUTOMATION="true")
    log = (args.out / "webdriver.log").open("w")
    native = None
    d = Driver(port)
    graceful = True
    try:
        # tauri-driver, the WebKitWebDriver it starts and the app get a
        # process group of their own.
        native_driver = shutil.which("WebKitWebDriver")
        if native_driver is None:
            raise Failure("WebKitWebDriver is not installed (Debian package webkit2gtk-driver)")
        native = subprocess.Popen([args.tauri_driver, "--port", str(port), "--native-port", str(free_port()),
                                   "--native-driver", native_driver], env=env, stdout=log, stderr=log,
                                  start_new_session=True)
        if args.pgid_file:
            args.pgid_file.write_text(str(native.pid))
        wait_for("tauri-driver", lambda: port_open(port) or native.poll() is not None, 20)
        if native.poll() is not None:
            raise Failure(f"tauri-driver exited with status {native.returncode} (see {args.out / 'webdriver.log'})")

        # 1. Empty library.
        d.start(args.app)
        wait_for("the library to open", lambda: app_ready(d), 180)
        check("empty library counts", d.text("#topbar-stats").startswith("0 documents"), d.text("#topbar-stats"))
        check("no conversations yet", d.visible("#conversations-empty"))
        for data in ("pdfjs/cmaps/UniJIS-UCS2-H.bcmap", "pdfjs/standard_fonts/FoxitSerif.pfb"):
            status, size = fetch_bytes(d, data)
            want = (args.dist / data).stat().st_size
            check(f"the app serves pdf.js's {data} to its page", status in (0, 200) and size == want,
                  f"status {status}, {size} bytes, want {want}")
        ask(d, "What is ownership?")
        wait_for("the not-in-documents state", lambda: d.count(".not-found") == 1, 60)
        check("an empty library says the answer is not in the documents", "Not in your documents" in d.text(".not-found"))
        d.screenshot(args.out / "1-chat-empty-library.png")

        # 2. Add documents through the ingest handler.
        d.click("#tab-library")
        submit_path(d, str(args.docs))
        files = sorted(p.name for p in args.docs.iterdir() if p.is_file())
        wait_for("the files to be indexed", lambda: d.count("#documents-body tr") == len(files)
                 and d.visible("#ingest-result"), 600, 0.5)
        states = d.js("return [...document.querySelectorAll('.ingest-row')].map(r => r.dataset.state);")
        check("every file ends indexed", states.count("indexed") + states.count("warning") >= len(files), states)
        check("the run summary names the count", f"Added {len(files)} documents" in d.text("#ingest-result"), d.text("#ingest-result"))
        d.screenshot(args.out / "2-library.png")
        d.js("const f = document.getElementById('library-filter'); f.value = 'strings'; f.dispatchEvent(new Event('input'));")
        check("the filter narrows the table", d.count("#documents-body tr") == 1, d.count("#documents-body tr"))
        d.js("const f = document.getElementById('library-filter'); f.value = ''; f.dispatchEvent(new Event('input'));")

        # 3. Ask with the tiny model: first with reranking off, then on.
        d.click("#tab-chat")
        d.click("#new-chat")
        set_rerank(d, "off")
        ask(d, "How does Rust ownership move a String?")
        wait_for("sources to arrive", lambda: d.count(".answer .inspector:not([hidden]) tbody tr") > 0, 180)
        wait_answer_done(d)
        streamed = d.js("const a = document.querySelectorAll('.answer'); return Number(a[a.length-1].dataset.tokens || 0);")
        check("the answer streamed token by token", streamed > 1, streamed)
        check("the answer has text", len(d.text(".answer .answer-text") or "") > 0)
        rows = d.count(".answer:last-of-type .inspector tbody tr") or d.count(".inspector tbody tr")
        check("the inspector lists the passages", rows > 0, rows)
        cells = last_inspector_rerank_cells(d)
        check("with reranking off no passage has a rerank score", cells and all(c == "–" for c in cells), cells)
        set_rerank(d, "on")
        ask(d, "What happens to the original String after the move?")
        wait_for("the second answer", lambda: d.count(".answer") == 2, 30)
        wait_answer_done(d)
        cells = last_inspector_rerank_cells(d)
        check("with reranking on every passage has a rerank score", cells and all(c != "–" for c in cells), cells)
        chips = d.count(".answer button.cite")
        if chips:
            d.click(".answer button.cite")
        else:
            d.click(".answer .source-open")
        wait_for("the source panel", lambda: d.visible("#source-panel"), 10)
        passage = d.text("#source-passage mark") or ""
        check("the source panel shows the passage", len(passage) > 20, passage[:80])
        d.js("const i = [...document.querySelectorAll('.answer .inspector')].pop(); i.open = true; i.scrollIntoView({block: 'end'});")
        d.screenshot(args.out / "3-chat-answer.png")
        conversations = d.count(".conversation-item")
        check("two conversations in the sidebar", conversations == 2, conversations)

        d.click("#tab-search")
        d.js("const i = document.getElementById('search-input'); i.value = 'string slices'; document.getElementById('search-form').requestSubmit();")
        wait_for("search results", lambda: d.count("#search-results .hit") > 0, 60)
        d.click("#tab-models")
        wait_for("the models panel", lambda: d.visible("#models-body .model") and d.count("#models-body .model") >= 2, 30)
        check("the embedder is present", "Present" in d.text("#models-body .model"))
        wait_for("live readings", lambda: d.count("#gpu-live .chart") > 0, 30)
        head = d.text("#gpu-live .gpu-live-head") or ""
        check("the live panel names the device or says there is no NVIDIA GPU",
              any(w in head for w in ("No NVIDIA GPU", "cuda", "CPU")), head)
        check("the settings show reranking on", d.js("return document.getElementById('settings-rerank').value;") == "on")
        d.screenshot(args.out / "4-models-gpu.png")

        # 4. Collections scope a conversation and a search.
        collections_flow(d, args.out)

        # 5. Delete a document.
        d.click("#tab-library")
        wait_for("the table", lambda: d.count("#documents-body tr") == len(files), 30)
        d.click("#documents-body tr .actions button:last-child")
        d.click("#documents-body tr .actions button:last-child")
        wait_for("the document to leave", lambda: d.count("#documents-body tr") == len(files) - 1, 60)
        check("deleting removes it from the library", True)
        d.stop()

        # 6. Restart on the same data folder.
        d.start(args.app)
        wait_for("the library to reopen", lambda: app_ready(d), 180)
        check("the library kept the rest", d.text("#topbar-stats").startswith(f"{len(files) - 1} documents"), d.text("#topbar-stats"))
        wait_for("conversations after a restart", lambda: d.count(".conversation-item") == 3, 30)
        # The most recent is the scoped one.
        d.click(".conversation-item .conversation-open")
        wait_for("the stored conversation", lambda: d.count(".turn") >= 1, 30)
        check("a stored answer keeps its sources", d.count(".turn .inspector tbody tr") > 0 or d.count(".turn .not-found") > 0)
        stored_scope = d.js("const s = document.querySelector('.turn .inspector-scope'); return s ? s.dataset.scope : null;")
        check("a stored answer keeps the scope it was retrieved from", stored_scope == COLLECTION, stored_scope)
        d.screenshot(args.out / "5-after-restart.png")
        print(f"all flows passed in {time.monotonic() - started:.0f} s")
        return 0
    except (Failure, OSError) as e:
        print(f"FAIL {e}", file=sys.stderr)
        try:
            d.screenshot(args.out / "failure.png")
        except (Failure, OSError, TypeError, ValueError):
            pass
        return 1
    except Stopped as e:
        graceful = False
        print(f"FAIL {e} after {time.monotonic() - started:.0f} s", file=sys.stderr)
        return 1
    finally:
        # Signals now would only interrupt the clean-up.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if graceful:
            d.stop()
        stop_group(native)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
