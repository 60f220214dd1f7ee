#!/usr/bin/env python3
"""Drives a headless Chromium over the DevTools protocol, through a pipe (Python stdlib only).

Used by the report's browser test (tests/tools/report_browser_test.py) and by
tools/report_screenshot.sh. The browser is started with --remote-debugging-pipe: it reads
protocol messages on fd 3 and writes them on fd 4, each a JSON object ended by a NUL byte. A page
is opened as a target attached in flattened mode (commands carry its sessionId); events that
arrive while waiting for a reply are kept, so console errors and exceptions are never missed
(which --dump-dom cannot see).

  python3 tools/report/cdp.py screenshot REPORT.html OUT.png [--width 1280] [--height 900]
"""

import argparse
import base64
import fcntl
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def find_browser():
    """The browser binary: $EBB_CHROMIUM, else the first of BROWSERS on PATH; None if none."""
    explicit = os.environ.get("EBB_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_version(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip()


def _high_fd(fd):
    """A duplicate of fd numbered 10 or above (so that dup2 onto 3 and 4 cannot clobber it)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """One headless browser process and its protocol pipe. Not thread-safe."""

    def __init__(self, binary, width=1280, height=900, timeout_s=60):
        self.timeout_s = timeout_s
        self.events = []  # (sessionId, method, params) of every event seen
        self._next_id = 0
        self._buffer = b""
        self._profile_dir = tempfile.mkdtemp(prefix="ebb-cdp-")
        to_browser_r, to_browser_w = (_high_fd(fd) for fd in os.pipe())
        from_browser_r, from_browser_w = (_high_fd(fd) for fd in os.pipe())

        def child_fds():
            os.dup2(to_browser_r, 3, inheritable=True)
            os.dup2(from_browser_w, 4, inheritable=True)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                "--disable-dev-shm-usage", "--disable-extensions",
                f"--user-data-dir={self._profile_dir}", f"--window-size={width},{height}",
                "about:blank"]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, preexec_fn=child_fds,
                                        pass_fds=(3, 4))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._write = to_browser_w
        self._read = from_browser_r

    def close(self):
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)
        shutil.rmtree(self._profile_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _message(self, deadline):
        """The next message from the browser, waiting until `deadline` (time.monotonic)."""
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no message from the browser in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed its pipe (exit code %s)" %
                                   self.process.poll())
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method, params=None, session=None):
        """Sends a command and returns its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append((reply.get("sessionId"), reply["method"],
                                    reply.get("params", {})))

    def wait_event(self, method, session, since=0):
        """Waits for event `method` of `session` at index >= since of self.events."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            for event in self.events[since:]:
                if event[0] == session and event[1] == method:
                    return event[2]
            since = len(self.events)
            reply = self._message(deadline)
            if "method" in reply:
                self.events.append((reply.get("sessionId"), reply["method"],
                                    reply.get("params", {})))


class Page:
    """One tab of a Browser, attached in flattened mode, with its errors collected."""

    def __init__(self, browser, width=1280, height=900):
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget",
                                    {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.send(domain)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def send(self, method, params=None):
        return self.browser.send(method, params, self.session)

    def navigate(self, url):
        """Loads `url`; returns the seconds from the request to the first frame after load."""
        since = len(self.browser.events)
        start = time.monotonic()
        self.send("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired", self.session, since)
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))",
                      await_promise=True)
        return time.monotonic() - start

    def evaluate(self, expression, await_promise=False):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": await_promise})
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluating {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self):
        """Exceptions, console errors and error log entries of this page so far, as text."""
        found = []
        for session, method, params in self.browser.events:
            if session != self.session:
                continue
            if method == "Runtime.exceptionThrown":
                found.append("exception: " + json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console." + params["type"] + ": " +
                             json.dumps(params.get("args", []))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append("log: " + params["entry"].get("text", "")[:500])
        return found

    def screenshot_png(self, full_page=False):
        params = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                              "scale": 1}
            params["captureBeyondViewport"] = True
        return base64.b64decode(self.send("Page.captureScreenshot", params)["data"])


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def png_pixels(png):
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    at, idat, header = 8, b"", None
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        data = png[at + 8:at + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat += data
        at += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {colour})")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        filter_type = raw[y * (stride + 1)]
        row = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = row[x - bpp] if x >= bpp else 0
            up = previous[x]
            up_left = previous[x - bpp] if x >= bpp else 0
            if filter_type == 1:
                row[x] = (row[x] + left) & 0xFF
            elif filter_type == 2:
                row[x] = (row[x] + up) & 0xFF
            elif filter_type == 3:
                row[x] = (row[x] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                row[x] = (row[x] + _paeth(left, up, up_left)) & 0xFF
        rows.append(bytes(row))
        previous = row
    return width, height, bpp, rows


def colour_stats(png):
    """(distinct colours, fraction of pixels unlike the most common colour) of a PNG."""
    width, height, bpp, rows = png_pixels(png)
    counts = {}
    for row in rows:
        for x in range(0, width * bpp, bpp):
            pixel = row[x:x + 3]
            counts[pixel] = counts.get(pixel, 0) + 1
    most = max(counts.values())
    return len(counts), 1 - most / (width * height)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    shot = sub.add_parser("screenshot", help="a PNG of a report as the browser draws it")
    shot.add_argument("html")
    shot.add_argument("png")
    shot.add_argument("--width", type=int, default=1280)
    shot.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    binary = find_browser()
    if binary is None:
        sys.exit("cdp.py: no Chromium found (tools/install_test_deps.sh installs it)")
    with Browser(binary, args.width, args.height) as browser:
        page = Page(browser, args.width, args.height)
        page.navigate("file://" + os.path.abspath(args.html))
        errors = page.errors()
        if errors:
            sys.exit("cdp.py: the page reported errors:\n" + "\n".join(errors))
        png = page.screenshot_png()
    with open(args.png, "wb") as out:
        out.write(png)
    print(f"screenshot of {args.html} written to {args.png} ({len(png)} bytes)")


if __name__ == "__main__":
    main()
