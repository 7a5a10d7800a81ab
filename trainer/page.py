"""The HTML both report pages are built from: the document and its style, escaping, tables, notes,
embedded figures and the data-quality line. `trainer.report` (the run page) and
`trainer.ladder_page` import it as `H`.
"""

from __future__ import annotations

import base64
import html
import io
import os
from datetime import datetime
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .artifacts import Directory

PART_TITLES = {"val": "validation", "test": "test"}
DPI = 100

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta { color: #555; } .note { background: #fff7e0; border-left: 4px solid #e0a800; padding: 0.4em 0.8em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; } th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.wide { overflow-x: auto; } .sd { display: block; font-size: 0.82em; color: #666; }
tr.oracle td { color: #b00020; font-style: italic; } tr.peer td { color: #8a4b00; }
img { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def document(title: str, body: list[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<p class=\"meta\">Written {datetime.now():%Y-%m-%d %H:%M:%S} by "
        "<code>python -m trainer report</code>.</p>\n</body>\n</html>\n"
    )


def e(text) -> str:
    return html.escape(str(text), quote=True)


def note(text: str) -> str:
    return f'<p class="note">{e(text)}</p>'


def table(table_id: str, header: list[str], rows: list[list], row_classes: list[str] | None = None) -> str:
    """An HTML table; numeric-looking cells are right-aligned."""
    out = [f'<table id="{e(table_id)}">', "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    for k, row in enumerate(rows):
        cls = f' class="{e(row_classes[k])}"' if row_classes and row_classes[k] else ""
        cells = "".join(
            f'<td class="num">{_cell_html(c)}</td>' if isinstance(c, (int, float, np.number)) or _numeric(c)
            else f"<td>{_cell_html(c)}</td>"
            for c in row
        )
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


class Html(str):
    """A table cell that is already HTML (its parts escaped), put in as it is."""


def _cell_html(c) -> str:
    return c if isinstance(c, Html) else e(c)


def _numeric(text) -> bool:
    try:
        float(str(text).replace(",", "").split(" ")[0])
        return True
    except ValueError:
        return False


def count(n) -> str:
    return "-" if n is None else f"{int(n):,}"


def calibration(block: dict) -> dict:
    """A split's calibration block of metrics.json; {} for runs written before calibration."""
    return block.get("calibration") or {}


class Figures:
    """Saves each figure as `report_<name>.png` beside the page and returns its embedded <img>."""

    def __init__(self, directory: Path):
        self.directory = Directory(directory)

    def img(self, name: str, fig: Figure, alt: str) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)  # each figure already ran tight_layout
        data = buf.getvalue()
        file = self.directory.write_report_figure(name, data)
        b64 = base64.b64encode(data).decode("ascii")
        return f'<img src="data:image/png;base64,{b64}" alt="{e(alt)}" data-file="{e(file)}">'


def data_quality(record: dict | None, directory: Path) -> str:
    """The data-quality result of the warehouse the run read, as recorded when it ran, or a note."""
    if not record:
        return note("This run did not record the warehouse it read (written before runs recorded it): "
                    "no data-quality result to show.")
    dq = record.get("data_quality")
    if not dq:
        where = record.get("schema_dir")
        if where is None:
            return note(f"No data-quality result: the table {record.get('table')} is not in a warehouse "
                        "(<warehouse>/<schema>.db/<model>).")
        return note(f"No data-quality result for the warehouse this run read ({where}) when it ran; "
                    "`make quality` (python -m expectations validate) writes one.")
    verdict = "passed" if dq.get("success") else "FAILED"
    failed = [name for name, ok in (dq.get("suites") or {}).items() if not ok]
    text = (f"Data quality of the warehouse this run read: {verdict}"
            + (f" ({', '.join(failed)})" if failed else "")
            + f", validated {dq.get('created_at', '?')}")
    docs = dq.get("data_docs")
    if docs and Path(docs).is_file():
        rel = Path(os.path.relpath(Path(docs).resolve(), directory.resolve())).as_posix()
        return f'<p id="data-quality">{e(text)}: <a id="data-docs" href="{e(rel)}">Data Docs</a></p>'
    return f'<p id="data-quality">{e(text)} (its Data Docs {e(docs)} are no longer there).</p>'
