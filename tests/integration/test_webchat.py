"""The chat page of `g4 serve` in a real browser: headless Chromium (Debian's
`chromium`) opens GET /, sends a message through the page (?send=...), and
checks that the reply streamed in (several pieces, no error), that the page
kept the conversation in localStorage, and takes a screenshot. The
browser is driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
NUL-separated JSON on fds 3 and 4), so nothing beyond the Python standard
library is needed. SKIP (77) when chromium is absent.

usage: test_webchat.py G4_BINARY TESTDATA_DIR"""
import base64, fcntl, json, os, shutil, socket, subprocess, sys, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from g4test import Scratch, check, finish, start  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _onto_3_and_4(r, w):
    """in the child: the pipe ends onto fds 3 and 4 (by way of high numbers,
    so that neither is overwritten by the other's move)"""
    hr, hw = fcntl.fcntl(r, fcntl.F_DUPFD, 100), fcntl.fcntl(w, fcntl.F_DUPFD, 100)
    os.dup2(hr, 3)
    os.dup2(hw, 4)


class Browser:
    """Chromium with the DevTools protocol on a pipe; one page, flattened session."""

    def __init__(self, scratch):
        r_in, w_in = os.pipe()   # we write commands -> browser reads fd 3
        r_out, w_out = os.pipe()  # browser writes fd 4 -> we read replies
        self.proc = scratch.spawn(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--user-data-dir=" + scratch.path("chromium"), "--window-size=1000,700", "about:blank"],
            pass_fds=(3, 4, r_in, w_out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=lambda: _onto_3_and_4(r_in, w_out))
        os.close(r_in), os.close(w_out)
        self.w, self.r, self.buf, self.id = w_in, r_out, b"", 0
        tid = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=tid, flatten=True)["sessionId"]

    def call(self, method, session=None, **params):
        self.id += 1
        msg = {"id": self.id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self.buf:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(line)
            if reply.get("id") == self.id:
                if "error" in reply:
                    raise RuntimeError("%s: %s" % (method, reply["error"]))
                return reply.get("result", {})

    def page(self, method, **params):
        return self.call(method, session=self.session, **params)

    def eval(self, expr):
        return self.page("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")


def main():
    g4, td = start("models/dense-f32.gguf")
    if not CHROMIUM:
        print("SKIP: chromium is not installed (apt-get install chromium; deploy/install-deps.sh does)")
        sys.exit(77)
    sc = Scratch("g4-webchat-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sc.spawn([g4, "serve", "-m", os.path.join(td, "models/dense-f32.gguf"), "--port", str(port), "--shards", "1"],
             env=sc.env, stdout=subprocess.DEVNULL, stderr=open(sc.path("serve.log"), "w"))
    base = "http://127.0.0.1:%d" % port
    for _ in range(120):
        try:
            if json.load(urllib.request.urlopen(base + "/health", timeout=2))["status"] == "ok":
                break
        except Exception:
            time.sleep(0.5)
    page = urllib.request.urlopen(base + "/", timeout=10)
    html = page.read().decode()
    check(page.status == 200 and "text/html" in page.headers["Content-Type"], "GET / is an HTML page")
    check("<script" in html and "http://" not in html.split("-->", 1)[1] and "https://" not in html,
          "the page loads nothing from elsewhere (no CDN)")

    b = Browser(sc)
    b.page("Page.enable")
    b.page("Page.navigate", url=base + "/?send=Tell%20me%20a%20story&max_tokens=24")
    state, t0 = None, time.time()
    while time.time() - t0 < 120:
        state = b.eval("document.body && document.body.dataset.state")
        if state in ("done", "error"):
            break
        time.sleep(0.2)
    check(state == "done", "the page's request ended without error (state %s)" % state)
    reply = b.eval("[...document.querySelectorAll('.msg.assistant .content')].map(e => e.textContent).join('|')")
    check(bool(reply), "a reply was streamed into the page: %r" % (reply or "")[:80])
    stats = b.eval("document.getElementById('stats').textContent") or ""
    pieces = int(stats.split()[0]) if stats[:1].isdigit() else 0
    check(pieces >= 2, "the reply came in pieces (streaming): %r" % stats)
    kept = json.loads(b.eval("localStorage.getItem('g4.conversations')") or "[]")
    check(len(kept) == 1 and [m["role"] for m in kept[0]["messages"]] == ["user", "assistant"],
          "the conversation is kept in localStorage: %s" % kept)
    check(b.eval("document.querySelector('#stop') !== null && document.querySelector('details') !== null"),
          "the page has a stop button and a folded reasoning section")
    shot = base64.b64decode(b.page("Page.captureScreenshot", format="png")["data"])
    with open(sc.path("page.png"), "wb") as f:
        f.write(shot)
    check(shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 5000, "a screenshot of the page (%d bytes)" % len(shot))
    finish()


if __name__ == "__main__":
    main()
