"""What the leaderboard publishes cannot be turned against its readers: CSV cells that a spreadsheet would run
as formulas are neutralised (numbers stay numbers), Markdown cells carry no raw HTML, the HTML page's CSP names its
own script and style by hash (an injected inline script does not run), and its URL fragment parser survives
what it cannot parse."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import shutil
from pathlib import Path

import pytest
from browser import launched
from synthetic_results import copy_runs_as

from benchmark.cli import main as cli_main
from benchmark.leaderboard.collect import collect
from benchmark.leaderboard.html import INDEX, site
from benchmark.leaderboard.render import csv_safe, render
from benchmark.leaderboard.table import build

RESULTS = Path(__file__).parents[1] / "fixtures" / "results"
EVIL = ['=HYPERLINK("http:evil","x")', "@SUM(A1)", "+cmd", "-2+3+cmd!A0", "x<img src=x onerror=alert(1)>"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """The fixture runs, and the blip2-tiny ones copied under model folders named like formulas and markup."""
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(RESULTS, root, dirs_exist_ok=True)  # plain runs beside them: negative changes among them
    for evil in EVIL:
        copy_runs_as(RESULTS / "blip2-tiny", root, evil)
    coll = collect(root)
    assert set(EVIL) <= {r.key.model for r in coll.runs}
    return build(coll), coll


def test_csv_formula_cells_are_neutralised_and_numbers_stay_numbers(hostile):
    board, _ = hostile
    rows = list(csv.DictReader(io.StringIO(render(board, "csv"))))
    models = {r["model"] for r in rows} - {p.name for p in RESULTS.iterdir()}
    assert models == {"'" + e for e in EVIL if e[0] in "=@+-"} | {e for e in EVIL if e[0] not in "=@+-"}
    numbers = [v for r in rows for k, v in r.items() if k.endswith(("_mean", "_ci_low", "_ci_high")) and v]
    assert numbers and any(v.startswith("-") for v in numbers)  # a negative change is among them
    for v in numbers:
        float(v)  # no quote prefix on any number


@pytest.mark.parametrize(("cell", "want"), [
    ("=1+1", "'=1+1"), ("+1+1", "'+1+1"), ("-1+1", "'-1+1"), ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("-0.0123", "-0.0123"), ("+1e-05", "+1e-05"), ("a=b", "a=b"), ("", ""), ("-", "'-"),
])
def test_csv_safe_follows_owasp(cell, want):
    assert csv_safe(cell) == want


def test_markdown_cells_carry_no_raw_html(hostile):
    board, _ = hostile
    md = render(board, "markdown")
    assert "<img" not in md and "x&lt;img src=x onerror=alert(1)&gt;" in md


def _inline(page: str, tag: str) -> str:
    return re.search(rf"<{tag}>(.*?)</{tag}>", page, re.S)[1]


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_csp_allows_only_the_pages_own_script_and_style_by_hash(hostile):
    board, coll = hostile
    page = site(board, coll)[INDEX]
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)[1]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert "unsafe-inline" not in policy
    assert directives["script-src"] == _sha(_inline(page, "script"))
    assert directives["style-src"] == _sha(_inline(page, "style"))
    assert directives["default-src"] == "'none'"


@pytest.fixture(scope="module")
def browser():
    with launched() as b:
        yield b


VISIBLE = "document.querySelectorAll('#rows > tr:not([hidden]):not(.provrow):not(.ref)').length"


def test_the_page_survives_fragments_it_cannot_parse_and_runs_no_injected_script(browser, tmp_path):
    out = tmp_path / "site"
    assert cli_main(["leaderboard", "--results", str(RESULTS), "--format", "html", "--output", str(out)]) == 0
    b, uri = browser, (out / INDEX).as_uri()
    b.open(uri + "#size=25")
    assert b.js("document.body.getAttribute('data-ready')") == "1" and b.js(VISIBLE) == 25
    for fragment in ('#size="]&sort=1&dir=asc', "#q=%E0%A4%A&size=25", "#%zz=1&size=25&page=-3"):
        b.open("about:blank")
        b.open(uri + fragment)
        assert b.js("document.body.getAttribute('data-ready')") == "1", fragment  # the script ran to its end
        if "sort=1" in fragment:  # the parts it could parse are applied
            assert b.js("document.querySelectorAll('#board thead th')[1].getAttribute('aria-sort')") == "ascending"
        else:
            assert b.js(VISIBLE) == 25, fragment  # paging applied
    # A script that escaped escaping, inline in the page: the CSP names only the page's own by hash.
    evil = out / "evil.html"
    evil.write_text((out / INDEX).read_text().replace(
        "</main>", "</main><script>document.body.setAttribute('data-pwned', '1')</script>"))
    b.open("about:blank")
    b.open(evil.as_uri())
    assert b.js("document.body.getAttribute('data-ready')") == "1"
    assert b.js("document.body.getAttribute('data-pwned')") is None
