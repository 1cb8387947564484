"""The leaderboard page in a real browser (Debian's chromium, headless): its script sorts and filters.

Runs where chromium is installed (``apt-get install chromium``); CI has no browser, and this is skipped there
with that reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from snn_det_zoo import _cards
from snn_det_zoo.bench.rows import make_row
from snn_det_zoo.leaderboard import Leaderboard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium browser (apt-get install chromium)")
def test_clicking_a_heading_sorts_and_typing_filters(tmp_path, monkeypatch):
    monkeypatch.setattr(_cards, "variant_cards", dict)
    rows = [make_row(model=m, tag="t", dataset="synthetic-shapes", protocol="coco", T=1, source="measured", AP=ap,
                     weights_sha256="ab" * 32) for m, ap in (("alpha", 20.0), ("beta", 5.0), ("gamma", 12.0))]
    page = Leaderboard.from_rows(rows).html()
    # What a reader does: click "AP measured" (ascending), type "a" then "ta" into the filter.
    clicks = ('<script>document.querySelectorAll("table.board th")[4].click();'
              'const f = document.getElementById("filter"); f.value = "ta"; f.dispatchEvent(new Event("input"));'
              "</script>")
    path = tmp_path / "board.html"
    path.write_text(page.replace("</body>", clicks + "</body>"))
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    lines = re.findall(r"<tr( hidden=\"\")?><td>(\w+)</td>", dom)
    assert [name for _, name in lines] == ["beta", "gamma", "alpha"]  # sorted by AP, lowest first
    assert [name for hidden, name in lines if not hidden] == ["beta"]  # only "beta" holds "ta"
    assert 'data-order="up"' in dom
