"""The page's first screen answers the question, and the PNG plot's title fits its figure.

At 1280 x 900 in headless Chromium (tests/browser.py), the element boxes of the DOM must put the verdict block and
the board's Gain and Richness headers inside the first viewport, with the plot between them; the verdict's text
is the Markdown's. The PNG's title is measured with matplotlib's renderer against the figure's box, for one, two
and three panels (one panel is narrower than the title's one line).
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import launched

from benchmark.cli import main as cli_main
from benchmark.leaderboard.collect import collect
from benchmark.leaderboard.html import INDEX, site
from benchmark.leaderboard.table import build
from benchmark.leaderboard.verdict import row_lines, title

RESULTS = Path(__file__).parents[1] / "fixtures" / "results"
WIDTH, HEIGHT = 1280, 900


class VerdictParser(HTMLParser):
    """The verdict section's row titles (th) and lines (td), as text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.titles, self.lines, self._depth, self._cell = [], [], 0, None

    def handle_starttag(self, tag, attrs):
        if tag == "section" and dict(attrs).get("id") == "verdict":
            self._depth = 1
        elif tag == "section" and self._depth:
            self._depth += 1
        elif self._depth and tag in ("th", "td"):
            self._cell = [tag, ""]

    def handle_endtag(self, tag):
        if tag == "section" and self._depth:
            self._depth -= 1
        elif self._cell is not None and tag == self._cell[0]:
            (self.titles if tag == "th" else self.lines).append(self._cell[1])
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


def test_the_page_leads_with_the_markdowns_verdicts():
    coll = collect(RESULTS)
    board = build(coll)
    page = site(board, coll)[INDEX]
    p = VerdictParser()
    p.feed(page)
    full = [r for r in board.rows if r.limit is None]
    limited = [r for r in board.rows if r.limit is not None]
    assert p.titles == [title(r) for r in full + limited]
    assert p.lines == [line for r in full + limited for line in row_lines(r)]
    # the verdict comes first, then the plot, then the board
    assert page.index('id="verdict"') < page.index('id="plots"') < page.index('id="board"')
    # limited runs are folded away while there are full ones
    assert re.search(r"<details><summary>Limited runs[^<]*: 9 model × task</summary>", page)


@pytest.fixture(scope="module")
def first_screen(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    assert cli_main(["leaderboard", "--results", str(RESULTS), "--format", "html", "--output", str(out)]) == 0
    with launched(WIDTH, HEIGHT) as b:
        b.open((out / INDEX).as_uri())
        yield b


def box(b, selector: str) -> dict:
    return b.js(f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
                " return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; })()")


def header_box(b, text: str) -> dict:
    return b.js("(() => { const th = Array.from(document.querySelectorAll('#board thead th'))"
                f".find(h => h.textContent.trim() === {text!r}); const r = th.getBoundingClientRect();"
                " return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; })()")


def inside(r: dict) -> bool:
    return 0 <= r["left"] and r["right"] <= WIDTH and 0 <= r["top"] and r["bottom"] <= HEIGHT


def test_first_screen_shows_the_verdict_the_plot_and_the_gain_and_richness_columns(first_screen, tmp_path):
    from PIL import Image

    b = first_screen
    assert b.js("document.body.getAttribute('data-ready')") == "1"
    assert b.js("[window.innerWidth, window.innerHeight, window.scrollY]") == [WIDTH, HEIGHT, 0]
    verdict, plots = box(b, "#verdict"), box(b, "#plots")
    assert inside(verdict), verdict
    for name in ("Gain", "Richness"):
        assert inside(header_box(b, name)), (name, header_box(b, name))
    # in order, the plot between the verdict and the board, and its panels large enough to read
    assert verdict["bottom"] <= plots["top"] <= plots["bottom"] <= box(b, "#board")["top"]
    widths = b.js("Array.from(document.querySelectorAll('svg.panel')).map(s => s.getBoundingClientRect().width)")
    assert len(widths) == 3 and min(widths) >= 340
    assert b.js("document.querySelector('#verdict').textContent").count("random-initialised twin") == 10

    shot = b.screenshot(full_page=False)
    (tmp_path / "first-screen.png").write_bytes(shot)
    with Image.open(io.BytesIO(shot)) as img:
        assert img.size == (WIDTH, HEIGHT)
        # the verdict's area of the picture has text on it (not a blank box)
        crop = img.convert("L").crop((int(verdict["left"]), int(verdict["top"]), int(verdict["right"]),
                                      int(verdict["bottom"])))
        lo, hi = crop.getextrema()
        assert hi - lo > 100


def _title_and_others(board):
    from benchmark.leaderboard.plot import figure

    fig = figure(board)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    others = [a.get_window_extent(renderer) for a in fig.axes] + [g.get_window_extent(renderer) for g in fig.legends]
    return fig, fig._suptitle.get_window_extent(renderer), others


@pytest.mark.parametrize("under, panels", [("llava15-tiny/textile", 1), ("llava15-tiny", 3), (None, 3),
                                           ("llava15-tiny/digits@max10", 1)])
def test_png_title_lies_inside_the_figure_and_clear_of_legend_and_panels(under, panels):
    board = build(collect(RESULTS, under=under) if under else collect(RESULTS))
    fig, text, others = _title_and_others(board)
    assert len(fig.axes) == panels
    frame = fig.bbox
    assert frame.x0 <= text.x0 and text.x1 <= frame.x1 and frame.y0 <= text.y0 and text.y1 <= frame.y1, (
        text, frame)
    for other in others:
        assert text.y0 >= other.y1 or not (text.x0 < other.x1 and other.x0 < text.x1), (text, other)
    # nothing of the title was dropped in the wrapping
    from benchmark.leaderboard.scatter import TITLE

    assert fig._suptitle.get_text().split() == TITLE.split()
