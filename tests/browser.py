"""A page opened in headless Chromium, as a reader's browser opens it: what loaded, what it logged."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

from clusters import unavailable

# The page is loaded in a frame of this one, whose script reads it once it has loaded (every
# picture of a page has loaded, or failed, before its load event); the report itself runs no
# script (its Content-Security-Policy forbids any).
FRAME = """<!DOCTYPE html><html><body><pre id="out">not loaded</pre><script>
const out = document.getElementById("out"), frame = document.createElement("iframe");
frame.style = "width: 1200px; height: 900px";
frame.onload = () => {
  const page = frame.contentDocument;
  out.textContent = JSON.stringify({
    title: page.title,
    headings: [...page.querySelectorAll("h1, h2")].map(h => h.textContent),
    images: [...page.images].map(i => [i.alt, i.complete ? i.naturalWidth : -1, i.naturalHeight]),
  });
};
frame.src = PAGE;
document.body.appendChild(frame);
</script></body></html>
"""


def open_page(page: Path) -> tuple[dict, list[str]]:
    """The page's title, headings and pictures ([alt, width, height]; a picture that does not
    decode has width 0), and every message its console logged (an error, a blocked request)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        unavailable("no chromium to open the report in (.ci/run installs Debian's chromium)")
    frame = page.parent / f".frame-{page.stem}.html"
    frame.write_text(FRAME.replace("PAGE", json.dumps(page.name)))
    try:
        done = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--allow-file-access-from-files",
                "--virtual-time-budget=10000",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                frame.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        frame.unlink()
    found = re.search(r'<pre id="out">(.*?)</pre>', done.stdout, re.S)
    assert found and found[1] != "not loaded", (done.stdout[-2000:], done.stderr[-2000:])
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html.unescape(found[1])), console
