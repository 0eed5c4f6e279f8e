"""The static HTML leaderboard: parsed structurally, then opened in headless Chromium.

Expected values are computed here from the raw metrics.json files of the fixtures (tests/fixtures/results), not
from the leaderboard code. The browser test drives the page with Selenium and chromedriver (tests/browser.py):
it clicks headers, sets filters and reads the DOM. Without them it skips, except under CI=true where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import launched
from synthetic_results import copy_runs_as

from benchmark.cli import main as cli_main
from benchmark.leaderboard.collect import collect
from benchmark.leaderboard.html import CSV_NAME, INDEX, JSON_NAME, site
from benchmark.leaderboard.render import render
from benchmark.leaderboard.table import build

RESULTS = Path(__file__).parents[1] / "fixtures" / "results"
SCREENSHOT = Path(__file__).parents[2] / "docs" / "leaderboard.png"
REGIME_LABEL = {"zero-shot": "ZS", "ft-proj": "FT-Proj", "ft-e2e": "FT-E2E", "ft-e2e-lora": "FT-E2E (LoRA)"}
# The changes that answer the question come right after what a line is, so they are on screen at 1280 px.
HEADERS = ["Model", "Task", "Regime", "Gain", "Richness", "Task F1", "Probe", "Gain %", "Richness %", "Pre-proj. probe",
           "Projector", "Eval", "Data", "Seeds", "Runs"]
COL = {h: i for i, h in enumerate(HEADERS)}


# -- independent expectations from the raw files -------------------------------------------------------------------
def raw_runs(root: Path) -> dict[tuple, dict]:
    """(model, task folder, regime folder, seed) -> metrics.json, straight from disk (baselines folders aside)."""
    out = {}
    for p in sorted(root.glob("*/*/*/seed*/metrics.json")):
        model, task_dir, regime, seed = p.relative_to(root).parts[:4]
        if regime == "baselines":
            continue
        out[(model, task_dir, regime, int(seed[4:]))] = json.loads(p.read_text())
    return out


def expected_lines(root: Path) -> dict[tuple, dict]:
    """(model, task, data, regime label) -> {"f1": mean, "gain": mean or None}: one table line per regime folder."""
    runs = raw_runs(root)
    out = {}
    for (model, task_dir, regime, _seed) in runs:
        task, _, k = task_dir.partition("@max")
        data = "full" if not k else f"limited ≤{k}/class"
        key = (model, task, data, REGIME_LABEL[regime])
        if key in out:
            continue
        seeds = sorted(s for (m, t, r, s) in runs if (m, t, r) == (model, task_dir, regime))
        f1 = [runs[(model, task_dir, regime, s)]["metrics"]["macro_f1"] for s in seeds]
        gain = None
        if regime != "zero-shot":
            gain = statistics.mean(runs[(model, task_dir, regime, s)]["metrics"]["macro_f1"]
                                   - runs[(model, task_dir, "zero-shot", s)]["metrics"]["macro_f1"] for s in seeds)
        out[key] = {"f1": statistics.mean(f1), "gain": gain}
    return out


# -- parsing -------------------------------------------------------------------------------------------------------
class TableParser(HTMLParser):
    """Rows of tbody#rows as (attrs, [(cell attrs, text)]), headers, and every src/href/url-bearing attribute."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.headers, self.rows, self.links, self.tags = [], [], [], []
        self._in_body = self._in_head = False
        self._cell = None
        self._table = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data", "xlink:href"):
                self.links.append((tag, name, value or ""))
        if tag == "table":
            self._table = a.get("id") or a.get("class")
        if tag == "tbody" and a.get("id") == "rows":
            self._in_body = True
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and self._in_body:
            self.rows.append((a, []))
        elif tag in ("td", "th"):
            self._cell = [a, ""]

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            if self._in_head and self._table in ("board", None):
                self.headers.append(self._cell[1].strip())
            elif self._in_body:
                self.rows[-1][1].append((self._cell[0], self._cell[1]))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


def parse(text: str) -> TableParser:
    p = TableParser()
    p.feed(text)
    p.close()
    return p


@pytest.fixture(scope="module")
def page_text() -> str:
    coll = collect(RESULTS)
    return site(build(coll), coll)[INDEX]


def measured(p: TableParser):
    return [(a, cells) for a, cells in p.rows if "data-ref" not in a]


def test_every_line_is_a_table_row_with_the_right_columns(page_text):
    p = parse(page_text)
    assert p.headers == HEADERS
    want = expected_lines(RESULTS)
    rows = measured(p)
    got = {(c[COL["Model"]][1], c[COL["Task"]][1], c[COL["Data"]][1], c[COL["Regime"]][1]): c for _, c in rows}
    assert len(rows) == len(want) == 30 and set(got) == set(want)
    for key, cells in got.items():
        assert len(cells) == len(HEADERS)
        # Sort keys are the exact means; the text is the Markdown's rounding of them.
        f1 = cells[COL["Task F1"]]
        assert float(f1[0]["data-v"]) == pytest.approx(want[key]["f1"], abs=1e-12)
        assert f1[1].startswith(f"{want[key]['f1']:.4f}")
        gain = cells[COL["Gain"]]
        if want[key]["gain"] is None:
            assert gain[1] == "" and gain[0]["data-v"] == ""
        else:
            assert float(gain[0]["data-v"]) == pytest.approx(want[key]["gain"], abs=1e-12)
            assert gain[1].startswith(f"{want[key]['gain']:+.4f}")
    # every row of leaderboard.json is behind some line, and each line names its row there
    doc = json.loads(render(build(collect(RESULTS)), "json"))
    for a, cells in rows:
        r = doc["rows"][int(a["data-row"])]
        assert (r["model"], r["task"]) == (cells[COL["Model"]][1], cells[COL["Task"]][1])
    assert {int(a["data-row"]) for a, _ in rows} == set(range(len(doc["rows"])))
    # 4 paper tasks x 3 regimes behind the toggle
    assert sum("data-ref" in a for a, _ in p.rows) == 12


def test_cells_are_the_markdown_cells(page_text):
    md = render(build(collect(RESULTS)), "markdown")
    p = parse(page_text)
    lora = next(c for _, c in measured(p) if c[COL["Regime"]][1] == "FT-E2E (LoRA)")
    for col in ("Task F1", "Probe", "Gain", "Gain %", "Richness", "Richness %"):
        assert f"| {lora[COL[col]][1]} " in md, col


def test_summary_and_baselines_tables_are_the_markdowns(page_text):
    md = render(build(collect(RESULTS)), "markdown")
    tables = re.findall(r'<table class="sortable">(.*?)</table>', page_text, re.S)
    assert len(tables) == 3  # summary of full runs, of limited runs, baselines of the limited digits run
    for t in tables:
        p = TableParser()
        p.feed("<table>" + t.replace("<tbody>", '<tbody id="rows">') + "</table>")
        md_lines = [[c.strip() for c in m.strip("|").split("|")] for m in md.splitlines() if m.startswith("| ")]
        assert p.headers in md_lines
        for _, cells in p.rows:
            assert [c[1] for c in cells] in md_lines  # the same cells, in the same order


def test_no_external_urls_and_nothing_to_fetch(page_text):
    p = parse(page_text)
    for tag, name, value in p.links:
        assert not re.match(r"^\s*(https?:|//|ftp:)", value, re.I), (tag, name, value)
    assert {v for _, n, v in p.links if n == "href"} == {"data:,", JSON_NAME, CSV_NAME}
    assert not [t for t in p.tags if t in ("img", "iframe", "object", "embed", "video", "audio", "source")]
    # no script or stylesheet from elsewhere, no URL anywhere in CSS or JS
    assert "<script src" not in page_text and "<link rel=\"stylesheet\"" not in page_text
    assert not re.search(r"https?://", page_text) and "url(" not in page_text and "@import" not in page_text
    assert "default-src 'none'" in page_text  # the browser itself refuses any fetch


def test_stylesheet_and_script_are_package_files_inlined_whole(page_text):
    import tomllib
    from fnmatch import fnmatch

    static = Path(__file__).parents[2] / "leaderboard" / "html" / "static"
    css, js = (static / "page.css").read_text(encoding="utf-8"), (static / "page.js").read_text(encoding="utf-8")
    assert f"<style>\n{css}</style>" in page_text and f"<script>\n{js}</script>" in page_text
    assert "getElementById(\"rows\")" in js and "tr.hl{" in css
    # a wheel carries them: every file of static/ matches the package data that pyproject.toml declares
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    globs = project["tool"]["setuptools"]["package-data"]["benchmark.leaderboard.html"]
    assert "benchmark.leaderboard.html" in project["tool"]["setuptools"]["packages"]
    for f in static.iterdir():
        assert any(fnmatch(f"static/{f.name}", g) for g in globs), f.name


def test_site_files_are_deterministic_and_the_formats_agree(tmp_path):
    out_a, out_b = tmp_path / "a", tmp_path / "b" / "site"
    copy = Path(shutil.copytree(RESULTS, tmp_path / "elsewhere" / "results"))
    assert cli_main(["leaderboard", "--results", str(RESULTS), "--format", "html", "--output", str(out_a)]) == 0
    assert cli_main(["leaderboard", "--results", str(copy), "--format", "html", "--output", str(out_b)]) == 0
    names = sorted(p.name for p in out_a.iterdir())
    assert names == sorted([INDEX, JSON_NAME, CSV_NAME])
    for name in names:
        assert (out_a / name).read_bytes() == (out_b / name).read_bytes(), name
    board = build(collect(RESULTS))
    assert (out_a / JSON_NAME).read_text() == render(board, "json")
    assert (out_a / CSV_NAME).read_text() == render(board, "csv")
    assert str(tmp_path) not in (out_b / INDEX).read_text()


def test_cli_html_needs_a_folder(tmp_path, capsys):
    assert cli_main(["leaderboard", "--results", str(RESULTS), "--format", "html"]) == 2
    assert "--output SITE/" in capsys.readouterr().err
    f = tmp_path / "file.html"
    f.write_text("x")
    assert cli_main(["leaderboard", "--results", str(RESULTS), "--format", "html", "--output", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err and f.read_text() == "x"


def test_names_from_folders_are_escaped(tmp_path):
    root = tmp_path / "results"
    evil = 'x<img src=x onerror=alert(1)>&"y'
    copy_runs_as(RESULTS / "blip2-tiny", root, evil)
    coll = collect(root)
    text = site(build(coll), coll)[INDEX]
    assert evil not in text and "x&lt;img src=x onerror=alert(1)&gt;&amp;&quot;y" in text
    p = parse(text)
    assert [c[COL["Model"]][1] for _, c in measured(p)] == [evil] * 3
    assert p.tags.count("script") == 2 and "img" not in p.tags  # only the page's own: provenance data, code


def test_provenance_of_each_run_is_in_the_page(page_text):
    data = json.loads(re.search(r'<script type="application/json" id="provenance">(.*?)</script>',
                                page_text, re.S)[1])
    raw = raw_runs(RESULTS)
    m = raw[("llava15-tiny", "textile", "ft-e2e-lora", 1)]
    pairs = dict(data["runs"]["llava15-tiny/textile/ft-e2e-lora/seed1"])
    assert pairs["git commit"] == m["provenance"]["git_commit"]
    assert pairs["config hash"] == m["config_hash"]
    assert pairs["checkpoint"] == m["checkpoint"] and pairs["task fingerprint"] == m["task_fingerprint"]
    assert f"torch {m['provenance']['versions']['torch']}" in pairs["versions"]
    assert len(data["runs"]) == len(raw)


# -- in a real browser -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    with launched() as b:
        yield b


VISIBLE = "Array.from(document.querySelectorAll('#rows > tr:not([hidden]):not(.provrow)'))"


def visible_cells(b, *cols: str) -> list:
    idx = [COL[c] for c in cols]
    return b.js(f"{VISIBLE}.map(tr => [{', '.join(f'tr.cells[{i}].textContent' for i in idx)}])")


def click_header(b, header: str) -> None:
    b.js(f"document.querySelectorAll('#board thead th')[{COL[header]}].querySelector('button').click()")


def set_filter(b, name: str, value: str) -> None:
    b.js(f"(() => {{ const s = document.getElementById('f-{name}'); s.value = {json.dumps(value)}; "
         "s.dispatchEvent(new Event('change')); })()")


def test_page_in_chromium_renders_sorts_filters_and_fetches_nothing(browser, tmp_path):
    out = tmp_path / "site"
    assert cli_main(["leaderboard", "--results", str(RESULTS), "--format", "html", "--output", str(out)]) == 0
    b = browser
    b.open((out / INDEX).as_uri())
    assert b.js("document.body.getAttribute('data-ready')") == "1"  # the script ran without an error
    want = expected_lines(RESULTS)
    shot = b.screenshot()
    if os.environ.get("UPDATE_SCREENSHOT"):  # docs/publishing.md's picture: UPDATE_SCREENSHOT=1 pytest -k chromium
        SCREENSHOT.write_bytes(shot)

    # every line renders, reference rows start hidden
    rows = visible_cells(b, "Model", "Task", "Data", "Regime")
    assert sorted(map(tuple, rows)) == sorted(want)
    assert b.js("document.querySelectorAll('#rows tr.ref:not([hidden])').length") == 0

    # sort by gain: descending first, lines without a gain (zero-shot) last; then ascending
    click_header(b, "Gain")
    got = [(tuple(r[:4]), r[4]) for r in visible_cells(b, "Model", "Task", "Data", "Regime", "Gain")]
    gains = [want[k]["gain"] for k, _ in got]
    n = sum(g is not None for g in gains)
    assert all(g is None for g in gains[n:]) and n == 20
    assert gains[:n] == sorted(gains[:n], reverse=True)
    top = max(want, key=lambda k: -1 if want[k]["gain"] is None else want[k]["gain"])
    assert got[0][0] == top and got[0][1].startswith(f"{want[top]['gain']:+.4f}")
    assert b.js(f"document.querySelectorAll('#board thead th')[{COL['Gain']}].getAttribute('aria-sort')") \
        == "descending"
    click_header(b, "Gain")
    gains = [want[tuple(r)]["gain"] for r in visible_cells(b, "Model", "Task", "Data", "Regime")]
    assert gains[:n] == sorted(gains[:n]) and all(g is None for g in gains[n:])

    # sort by model name
    click_header(b, "Model")
    models = [r[0] for r in visible_cells(b, "Model")]
    assert models == sorted(models) and len(models) == 30

    # filters: each narrows to exactly the matching lines, and they combine
    set_filter(b, "task", "digits")
    assert sorted(map(tuple, visible_cells(b, "Model", "Task", "Regime"))) == sorted(
        (k[0], k[1], k[3]) for k in want if k[1] == "digits")
    set_filter(b, "task", "")
    set_filter(b, "regime", "FT-Proj")
    set_filter(b, "data", "full")
    assert visible_cells(b, "Model", "Task", "Regime") == [["llava15-tiny", "textile", "FT-Proj"]]
    set_filter(b, "data", "")
    assert len(visible_cells(b, "Model")) == sum(k[3] == "FT-Proj" for k in want)
    set_filter(b, "regime", "")
    set_filter(b, "family", "q-former")
    assert {r[0] for r in visible_cells(b, "Model")} == {"blip2-tiny", "instructblip-tiny"}
    set_filter(b, "family", "")
    b.js("(() => { const s = document.getElementById('f-search'); s.value = 'qwen2';"
         " s.dispatchEvent(new Event('input')); })()")
    assert [r[0] for r in visible_cells(b, "Model")] == ["qwen2vl-tiny"] * 3
    # the view is in the URL: reloading it restores the same lines
    assert "q=qwen2" in b.js("location.hash")
    b.reload()
    assert [r[0] for r in visible_cells(b, "Model")] == ["qwen2vl-tiny"] * 3
    b.js("document.getElementById('reset').click()")

    # paper reference rows behind the toggle
    b.js("document.getElementById('show-ref').click()")
    assert len(visible_cells(b, "Model")) == 30 + 12
    b.js("document.getElementById('show-ref').click()")

    # pagination: 25 per page, then the remaining 5
    b.js("(() => { const s = document.getElementById('page-size'); s.value = '25';"
         " s.dispatchEvent(new Event('change')); })()")
    assert len(visible_cells(b, "Model")) == 25
    b.js("document.getElementById('next').click()")
    assert len(visible_cells(b, "Model")) == 5

    # the per-model summary sorts by a column, numbers by value
    b.js("document.querySelectorAll('table.sortable')[1].tHead.rows[0].cells[3].querySelector('button').click()")
    gains = b.js("Array.from(document.querySelectorAll('table.sortable')[1].tBodies[0].rows)"
                 ".map(tr => parseFloat(tr.cells[3].textContent))")
    assert gains == sorted(gains) and len(gains) == 8

    # provenance on demand, and a plot point leads to its line
    b.js("document.getElementById('reset').click()")
    b.js("document.querySelector('#rows button.prov').click()")
    first = raw_runs(RESULTS)[("blip2-tiny", "textile@max10", "zero-shot", 0)]
    prov_text = b.js("document.querySelector('#rows tr.provrow').textContent")
    assert first["provenance"]["git_commit"] in prov_text and first["config_hash"] in prov_text
    n_points = b.js("document.querySelectorAll('svg .pt').length")
    assert n_points == 20  # every fine-tuned line has a gain and a richness change
    b.js("document.querySelector('svg .pt[data-id=\"16\"]').dispatchEvent(new MouseEvent('click', {bubbles: true}))")
    assert b.js("document.querySelector('#rows tr.hl').id") == "r16"

    (tmp_path / "leaderboard.png").write_bytes(shot)
    from PIL import Image

    with Image.open(tmp_path / "leaderboard.png") as img:
        assert img.width >= 1000 and img.height >= 1000
        lo, hi = img.convert("L").getextrema()
        assert hi - lo > 100  # not a blank page
    assert b.requests and all(u.startswith("file://") for u in b.requests), b.requests


def test_cell_markup_keeps_the_text_and_intervals_become_error_bars():
    from types import SimpleNamespace

    from benchmark.leaderboard.html.tables import td as _td
    from benchmark.leaderboard.scatter import error_bar

    text = "+0.1000 ± 0.0452 [+0.0500, +0.1500] (n.s.) (1/2 seeds)"
    p = TableParser()
    p.feed(f'<table><tbody id="rows"><tr>{_td(text, "0.1", True)}</tr></tbody></table>')
    (attrs, text_got), = p.rows[0][1]
    assert text_got == text and attrs["data-v"] == "0.1"
    assert '<span class="ci"> [+0.0500, +0.1500]</span>' in _td(text, "0.1", True)
    # error bars: the interval where the results carry one, else mean ± std, else nothing
    assert error_bar(SimpleNamespace(mean=0.1, std=0.05, ci=(0.02, 0.3))) == (0.02, 0.3)
    assert error_bar(SimpleNamespace(mean=0.1, std=0.05)) == pytest.approx((0.05, 0.15))
    assert error_bar(SimpleNamespace(mean=0.1, std=None)) == (0.1, 0.1)


def test_control_probe_table_is_the_markdowns(tmp_path):
    root = Path(shutil.copytree(RESULTS, tmp_path / "results"))
    for p in (root / "blip2-tiny").rglob("metrics.json"):
        m = json.loads(p.read_text())
        m["probe"]["post_projection"]["control"] = {"macro_f1": 0.125}
        if "pre_projection" in m["probe"]:
            m["probe"]["pre_projection"]["control"] = {"macro_f1": 0.1}
        p.write_text(json.dumps(m))
    coll = collect(root)
    board = build(coll)
    md = render(board, "markdown")
    md_lines = [[c.strip() for c in m.strip("|").split("|")] for m in md.splitlines() if m.startswith("| ")]
    page = site(board, coll)[INDEX]
    assert "<h3>Control probes, limited runs (quick checks)</h3>" in page
    table = re.search(r"Control probes, limited runs.*?<table class=\"sortable\">(.*?)</table>", page, re.S)[1]
    p = TableParser()
    p.feed("<table>" + table.replace("<tbody>", '<tbody id="rows">') + "</table>")
    assert p.headers in md_lines, (p.headers, [m for m in md_lines if "Seeds" in m])
    assert len(p.rows) == 9
    for _, cells in p.rows:
        assert [c[1] for c in cells] in md_lines
    blip = next(c for _, c in p.rows if c[0][1] == "blip2-tiny")
    assert any(c[1].startswith("0.1250") for c in blip)  # the control F1 written above


def test_odd_provenance_never_hides_a_run(tmp_path):
    from benchmark.leaderboard.collect import PROVENANCE_MAX_CHARS

    root = Path(shutil.copytree(RESULTS / "blip2-tiny", tmp_path / "results" / "blip2-tiny"))
    deep: dict = {}
    cur = deep
    for _ in range(500):  # parses, but would exhaust the stack of a naive recursive formatter
        cur["x"] = {}
        cur = cur["x"]
    for i, p in enumerate(sorted(root.rglob("metrics.json"))):
        m = json.loads(p.read_text())
        m["provenance"] = [{"git_commit": 1}, "x"] if i == 0 else {"versions": deep, "git_commit": "a" * 50_000}
        p.write_text(json.dumps(m))
    coll = collect(tmp_path / "results")
    assert len(coll.runs) == 6 and not coll.skipped
    text = site(build(coll), coll)[INDEX]
    assert "(50000 characters, cut)" in text
    for run in coll.runs:
        assert all(len(v) <= PROVENANCE_MAX_CHARS + 40 for _, v in run.provenance)


def test_page_plots_and_png_show_the_same_panels_and_points(page_text):
    from benchmark.leaderboard.plot import figure
    from benchmark.leaderboard.scatter import points_of

    board = build(collect(RESULTS))
    png_titles = [ax.get_title() for ax in figure(board).axes]
    svg_titles = re.findall(r'<svg class="panel"[^>]*aria-label="([^"]*): richness change vs task gain"', page_text)
    assert svg_titles == png_titles and len(png_titles) == 3   # textile, digits (limited), textile (limited)
    assert page_text.count('<g class="pt"') == len(points_of(board)) == 2 * len(board.rows)
