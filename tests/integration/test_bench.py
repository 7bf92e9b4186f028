"""The IMAP benchmark against Dovecot, in its short form, so that it cannot rot (issue 9).

Runs ``bench/imap_dovecot.py --short`` (3,000 messages, Dovecot started by the bench itself) and
checks that it printed every figure as a ratio and the reactor-lag probe. No timing is asserted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURES = (
    "UID FETCH 1:* (UID FLAGS)",
    "Delta Chat header fetch of the last 500",
    "UID SEARCH UNSEEN",
    "STATUS INBOX (MESSAGES UNSEEN)",
    "SELECT INBOX",
    "APPEND, imaplib (msg/s)",
    "UID SEARCH SINCE",
)


def test_the_short_imap_bench_prints_every_ratio() -> None:
    assert Path("/usr/sbin/dovecot").exists(), "install Debian's dovecot-imapd (.ci/run does)"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "imap_dovecot.py"), "--short"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for figure in FIGURES:
        line = next((line for line in done.stdout.splitlines() if line.startswith(figure)), None)
        assert line is not None, f"{figure} missing from:\n{done.stdout}"
        assert re.search(r" \d+\.\d\d  \d+\.\d\d$", line), line  # a ratio and the load average
    assert re.search(r"reactor lag: worst \d+\.\d ms", done.stdout), done.stdout
