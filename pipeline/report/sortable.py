"""Tables a reader sorts and filters in the browser, with no server and no library: a small inline script.

Click a column's heading to sort by it (again to reverse); numbers sort as numbers (a cell's
`data-value`), text as text, empty cells last either way. The box above filters rows by any text
in them. The view is kept in the page's address (`#sort=KEY&order=desc&filter=TEXT`), so a sorted
view can be bookmarked or sent, and opens sorted.

`SCRIPT` is the whole program; its `compare` works on plain {value, text} objects, so a test runs
it under node without a browser. Cells are given as HTML the caller has escaped.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

SCRIPT = """
var sortable = {
  compare: function (a, b) {
    var x = a.value, y = b.value, hasX = x !== null && !isNaN(x), hasY = y !== null && !isNaN(y);
    if (hasX && hasY) return x - y;
    if (hasX || hasY) return hasX ? -1 : 1;
    if (!a.text || !b.text) return a.text ? -1 : b.text ? 1 : 0;
    return a.text.localeCompare(b.text);
  },
  key: function (cell) {
    var v = cell.getAttribute('data-value');
    return {value: v === null ? null : parseFloat(v), text: cell.textContent.trim()};
  },
  sort: function (table, column, descending) {
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    var heads = table.tHead.rows[0].cells;
    rows.sort(function (r, s) {
      var a = sortable.key(r.cells[column]), b = sortable.key(s.cells[column]);
      var empty = (a.value === null && !a.text) - (b.value === null && !b.text);
      return empty || (descending ? -1 : 1) * sortable.compare(a, b);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute('aria-sort');
    heads[column].setAttribute('aria-sort', descending ? 'descending' : 'ascending');
  },
  filter: function (text) {
    var query = text.trim().toLowerCase();
    document.querySelectorAll('table.sortable tbody tr').forEach(function (row) {
      row.hidden = query !== '' && row.textContent.toLowerCase().indexOf(query) < 0;
    });
  },
  remember: function (state) {
    var params = new URLSearchParams(location.hash.slice(1));
    Object.keys(state).forEach(function (k) { if (state[k]) params.set(k, state[k]); else params.delete(k); });
    history.replaceState(null, '', '#' + params.toString());
  },
  start: function () {
    var params = new URLSearchParams(location.hash.slice(1)), box = document.getElementById('filter');
    document.querySelectorAll('table.sortable').forEach(function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (head, column) {
        head.tabIndex = 0;
        head.onclick = head.onkeydown = function (event) {
          if (event.type === 'keydown' && event.key !== 'Enter') return;
          var descending = head.getAttribute('aria-sort') === 'ascending';
          sortable.sort(table, column, descending);
          sortable.remember({sort: head.getAttribute('data-key'), order: descending ? 'desc' : 'asc'});
        };
        if (head.getAttribute('data-key') === params.get('sort')) {
          sortable.sort(table, column, params.get('order') === 'desc');
        }
      });
    });
    box.value = params.get('filter') || '';
    box.oninput = function () { sortable.filter(box.value); sortable.remember({filter: box.value}); };
    sortable.filter(box.value);
  }
};
if (typeof document !== 'undefined') sortable.start();
"""

STYLE = (
    "table.sortable th{cursor:pointer}table.sortable :is(td,th):nth-child(-n+4){text-align:left}"
    "table.sortable th[aria-sort=ascending]::after{content:' ▲'}"
    "table.sortable th[aria-sort=descending]::after{content:' ▼'}#filter{width:24rem;max-width:100%;padding:.3rem}"
)


@dataclass(frozen=True)
class Cell:
    """One cell: `html` shown (escaped by the caller), `value` the number it sorts by (None: by its text)."""

    html: str
    value: float | None = None


def filter_box(placeholder: str) -> str:
    """The text box that filters every sortable table of the page."""
    return (
        f"<p><input type='search' id='filter' placeholder='{html.escape(placeholder)}' "
        f"aria-label='filter the rows'></p>"
    )


def sortable_table(columns: list[tuple[str, str]], rows: list[list[Cell]]) -> str:
    """A sortable table: `columns` are (key, heading) in plain text, `rows` lists of `Cell`s in that order (the
    first four columns are text, aligned left)."""
    heads = "".join(f"<th data-key='{html.escape(key)}'>{html.escape(heading)}</th>" for key, heading in columns)
    body = "".join("<tr>" + "".join(map(_cell, row)) + "</tr>" for row in rows)
    return (
        f"<div class='wide'><table class='sortable'><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def script() -> str:
    """The inline script and its style, to close the page's body with."""
    return f"<style>{STYLE}</style><script>{SCRIPT}</script>"


def _cell(cell: Cell) -> str:
    value = cell.value
    if value is None or not math.isfinite(value):
        return f"<td>{cell.html}</td>"
    return f"<td data-value='{value!r}'>{cell.html}</td>"
