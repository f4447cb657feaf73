"""A real headless browser for the dashboard tests: Debian's Chromium, driven by Playwright
for Python through ``executable_path`` (Playwright's own browser download is never used).

Where Chromium is missing and this runs as root with apt-get, it is installed the way
``.ci/run`` installs it, so the README's test command alone works on a fresh Debian machine;
otherwise the tests fail (never skip) with a one-line message saying how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

#: where Debian's package puts it; CHROMIUM=<path> picks another build
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
INSTALL = "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium"
#: the machine's network is closed: no background fetches, no QUIC, no first-run work
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _found() -> str | None:
    wanted = os.environ.get("CHROMIUM")
    for path in ((wanted,) if wanted else CANDIDATES):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return None


def chromium() -> str:
    """The path of a Chromium executable, installing Debian's package when allowed to;
    fails the calling test with how to install it otherwise."""
    path = _found()
    if path is None and os.geteuid() == 0 and shutil.which("apt-get") and not os.environ.get(
            "CHROMIUM"):
        done = subprocess.run(["sh", "-c", INSTALL], capture_output=True, text=True,
                              timeout=900)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            pytest.fail(f"installing chromium failed ({tail[0]}); run as root: {INSTALL}",
                        pytrace=False)
        path = _found()
    if path is None:
        pytest.fail(f"the dashboard tests need Chromium at /usr/bin/chromium; install it as "
                    f"root with: {INSTALL} (or set CHROMIUM=<path>)", pytrace=False)
    return path
