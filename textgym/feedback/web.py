"""The web front end: a small self-contained page served on localhost by the standard library.

``WebInterface`` runs a ``ThreadingHTTPServer`` on ``127.0.0.1`` (a free port by default) in a
daemon thread. The page works without JavaScript: it is a plain HTML form with inline CSS, posted
back to the server, which validates every answer, saves (and logs) the valid ones at once and
re-renders the form with a message next to each invalid one, keeping everything that was typed.
While no batch is waiting, the page reloads itself every two seconds, so one open tab follows the
whole training run. No external assets are loaded.

Routes: ``GET /`` (the page), ``POST /submit`` (the form), ``GET /api/batch`` and
``POST /api/submit`` (JSON, for scripts: ``{"batch": id, "answers": {"0": "4", ...}}`` returns
``{"ok": bool, "errors": {"1": message}, "remaining": [...], "closed": reason}``).
"""

from __future__ import annotations

import html
import json
import sys
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import parse_qs

from textgym.feedback.session import PAIR, Batch

MAX_BODY = 4 * 1024 * 1024
REFRESH_S = 2

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#24324a;color:#fff;padding:.8rem 1.2rem}
header h1{font-size:1.15rem;margin:0}
main{max-width:70rem;margin:1rem auto;padding:0 1rem}
.note{background:#fff;border-left:4px solid #3b6fd8;padding:.7rem 1rem;margin:.6rem 0}
.alert{border-left-color:#c62828;background:#fdecea}
.item{background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:.8rem 1rem;margin:.8rem 0}
.item.invalid{border-color:#c62828;box-shadow:0 0 0 2px #f6c8c4}
.item.done{border-color:#3c8d40}
.label{font-size:.75rem;text-transform:uppercase;letter-spacing:.05em;color:#5b6475;margin-top:.4rem}
.text{white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;background:#f7f8fa;padding:.4rem .6rem;border-radius:4px;margin:.15rem 0}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:.8rem}
.answer{margin-top:.6rem;display:flex;gap:.8rem;align-items:center;flex-wrap:wrap}
.answer input[type=text]{width:5rem;font-size:1rem;padding:.25rem .4rem}
.error{color:#c62828;font-weight:600}
.saved{color:#3c8d40}
button{font-size:1rem;padding:.5rem 1.4rem;background:#3b6fd8;color:#fff;border:0;border-radius:4px;cursor:pointer}
"""

_JS = """
(function(){var f=document.querySelector('.invalid input')||document.querySelector('input[data-empty]');
if(f){f.focus();}})();
"""


def _e(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _page(title: str, body: str, refresh: bool = False) -> bytes:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if refresh else ""
    doc = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"{meta}<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><header><h1>{_e(title)}</h1></header><main>{body}</main>"
        f"<script>{_JS}</script></body></html>"
    )
    return doc.encode("utf-8")


def _reference_html(reference: Any) -> str:
    if reference is None:
        return ""
    ref = reference if isinstance(reference, str) else " | ".join(map(str, reference))
    return f'<div class=label>reference</div><div class="text reference">{_e(ref)}</div>'


def render_batch(batch: Batch, notice: str = "") -> bytes:
    """The form for ``batch``: every item, its answer so far and its error message, if any."""
    n = len(batch)
    if batch.kind == PAIR:
        intro = f"Compare {n} pair(s): for each prompt, which completion is better?"
    else:
        intro = (
            f"Rate {n} completion(s): {_e(batch.scale.describe())} for each, higher is better. "
            f"Valid ratings are saved as soon as you submit, even if others need fixing."
        )
    parts = [f"<p class=note id=intro>{intro}</p>"]
    if notice:
        parts.append(f'<p class="note alert" id=notice role=alert>{_e(notice)}</p>')
    bad = sorted(batch.errors)
    if bad:
        which = ", ".join(f"#{i + 1}" for i in bad)
        parts.append(
            f'<p class="note alert" id=summary role=alert>{len(bad)} answer(s) need fixing: '
            f"{which}. The others were saved.</p>"
        )
    parts.append(
        f'<form method=post action="/submit" id=form novalidate>'
        f'<input type=hidden name=batch value="{_e(batch.batch_id)}">'
    )
    for i, item in enumerate(batch.items):
        state = "invalid" if i in batch.errors else "done" if i in batch.answers else ""
        parts.append(f'<section class="item {state}" id="item-{i}"><b>#{i + 1}</b>')
        parts.append(
            f'<div class=label>prompt</div><div class="text prompt">{_e(item.prompt)}</div>'
        )
        parts.append(_reference_html(item.reference))
        if batch.kind == PAIR:
            parts.append(
                "<div class=pair>"
                f'<div><div class=label>A</div><div class="text completion-a">{_e(item.completion)}</div></div>'
                f'<div><div class=label>B</div><div class="text completion-b">{_e(item.completion_b)}</div></div>'
                "</div>"
            )
            current = batch.answers.get(i, batch.raw.get(i, ""))
            radios = []
            for value, label in (("a", "A better"), ("b", "B better"), ("tie", "tie")):
                checked = " checked" if current == value else ""
                radios.append(
                    f'<label><input type=radio name="c{i}" id="choice-{i}-{value}" '
                    f'value="{value}"{checked}> {label}</label>'
                )
            answer = "".join(radios)
        else:
            parts.append(
                f'<div class=label>completion</div><div class="text completion">{_e(item.completion)}</div>'
            )
            value = batch.raw.get(i, "")
            empty = " data-empty" if not value else ""
            answer = (
                f'<label for="rating-{i}">rating ({_e(batch.scale.describe())})</label>'
                f'<input type=text inputmode=decimal autocomplete=off name="r{i}" id="rating-{i}" '
                f'value="{_e(value)}"{empty}>'
            )
        if i in batch.errors:
            answer += f'<span class=error id="error-{i}">{_e(batch.errors[i])}</span>'
        elif i in batch.answers:
            answer += f'<span class=saved id="saved-{i}">saved</span>'
        parts.append(f"<div class=answer>{answer}</div></section>")
    parts.append("<button type=submit id=submit>Submit</button></form>")
    return _page("textgym: human feedback", "".join(parts))


def render_waiting(message: str) -> bytes:
    body = (
        f"<p class=note id=status>{_e(message)}</p>"
        f"<p>Waiting for the next batch; this page reloads every {REFRESH_S} s.</p>"
    )
    return _page("textgym: human feedback", body, refresh=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal is the UI
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _html(self, body: bytes, status: int = 200) -> None:
        self._send(status, body, "text/html; charset=utf-8")

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), "application/json")

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._json({"ok": False, "error": "request body too large"}, 413)
            return None
        return self.rfile.read(length)

    def do_GET(self) -> None:
        ui = self.server.ui
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._html(ui.render_current())
        elif path == "/api/batch":
            self._json(ui.batch_json())
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._html(
                _page("not found", f"<p>No page {_e(path)}; go to <a href='/'>/</a>.</p>"), 404
            )

    def do_POST(self) -> None:
        ui = self.server.ui
        path = self.path.split("?", 1)[0]
        body = self._body()
        if body is None:
            return
        if path == "/submit":
            form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
            fields = {k: v[-1] for k, v in form.items()}
            self._html(ui.handle_form(fields))
        elif path == "/api/submit":
            try:
                data = json.loads(body or b"{}")
                answers = {int(k): v for k, v in dict(data.get("answers", {})).items()}
            except (ValueError, TypeError, AttributeError) as e:
                self._json({"ok": False, "error": f"bad JSON request: {e}"}, 400)
                return
            status, reply = ui.handle_api(data.get("batch"), answers)
            self._json(reply, status)
        else:
            self._json({"ok": False, "error": f"no endpoint {path}"}, 404)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    ui: WebInterface


class WebInterface:
    """Serves the batch being rated on ``http://host:port/`` and waits for the answers.

    Args:
        host: interface to bind (``127.0.0.1``: only this machine can reach the page).
        port: TCP port; ``0`` picks a free one (see :attr:`url`).
        output: where the URL and status lines are printed (default ``sys.stdout``).
        open_browser: open the page in the default browser when the server starts.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        output: IO[str] | None = None,
        open_browser: bool = False,
    ):
        self.host, self.port = host, port
        self.output = output
        self.open_browser = open_browser
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batch: Batch | None = None
        self.last: Batch | None = None
        self.fallback_note = ""

    def print(self, text: str) -> None:
        out = self.output if self.output is not None else sys.stdout
        out.write(text + "\n")
        out.flush()

    @property
    def url(self) -> str:
        """The page's address (starts the server if needed)."""
        return self.start()

    def _address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> str:
        with self._lock:
            if self._server is None:
                server = _Server((self.host, self.port), _Handler)
                server.ui = self
                self._thread = threading.Thread(
                    target=server.serve_forever, name="textgym-feedback-web", daemon=True
                )
                self._thread.start()
                self._server = server
                started = True
            else:
                started = False
            url = self._address()
        if started:
            self.print(f"textgym feedback page: {url}")
            if self.open_browser:
                webbrowser.open(url)
        return url

    def close(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # -- what the handler calls ------------------------------------------------------------

    def render_current(self, notice: str = "") -> bytes:
        batch = self.batch
        if batch is not None and not batch.closed:
            return render_batch(batch, notice)
        last = self.last or batch
        if last is None:
            message = notice or "No batch yet."
        elif last.closed_reason == "complete":
            message = f"Thank you: all {len(last)} answer(s) of the last batch were saved."
        else:
            message = (
                f"The last batch was closed ({last.closed_reason}) with {len(last.answers)} of "
                f"{len(last)} answered. {self.fallback_note}"
            )
        if notice and last is not None:
            message = f"{notice} {message}"
        return render_waiting(message)

    def handle_form(self, fields: dict[str, str]) -> bytes:
        batch = self.batch
        posted = fields.get("batch", "")
        if batch is None or batch.batch_id != posted or batch.closed:
            return self.render_current(
                notice="That form belonged to a batch that is closed; nothing was saved from it."
            )
        prefix = "c" if batch.kind == PAIR else "r"
        answers = {}
        for i in range(len(batch)):
            key = f"{prefix}{i}"
            if key in fields:
                answers[i] = fields[key]
            elif batch.kind == PAIR and i not in batch.answers:
                answers[i] = ""  # an unchecked radio group is not posted at all
        batch.submit_many(answers)
        return self.render_current()

    def handle_api(self, batch_id: Any, answers: dict[int, Any]) -> tuple[int, dict]:
        batch = self.batch
        if batch is None or str(batch_id) != batch.batch_id:
            return 409, {
                "ok": False,
                "error": "no open batch with that id",
                "batch": self.batch_json(),
            }
        errors = batch.submit_many(answers)
        reply = {
            "ok": not errors,
            "errors": {str(i): m for i, m in errors.items()},
            "remaining": batch.remaining,
            "closed": batch.closed_reason,
        }
        return (422 if errors else 200), reply

    def batch_json(self) -> dict:
        batch = self.batch
        if batch is None:
            return {"batch": None}
        return {
            "batch": batch.batch_id,
            "kind": batch.kind,
            "scale": batch.scale.as_list() if batch.scale else None,
            "closed": batch.closed_reason,
            "remaining": batch.remaining,
            "items": [
                {
                    "prompt": it.prompt,
                    "completion": it.completion,
                    "completion_b": it.completion_b,
                    "reference": it.reference,
                }
                for it in batch.items
            ],
        }

    # -- what the scorer calls -------------------------------------------------------------

    def collect(self, batch: Batch, deadline: float | None) -> None:
        url = self.start()
        self.batch = batch
        what = "comparison(s)" if batch.kind == PAIR else "rating(s)"
        self.print(f"waiting for {len(batch.remaining)} {what} at {url}")
        try:
            batch.wait(deadline)
        finally:
            self.last = batch
        if not batch.complete:
            self.print(f"(batch closed: {batch.closed_reason})")
