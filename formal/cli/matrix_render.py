"""The matrix for people: a terminal table (rich) and a self-contained HTML page with an SVG
grid (rows: policies; columns: configuration x property; a colour per verdict), each cell
linking to its details: a refuted cell to its counterexample and how to replay it, a proved
cell to its certificate's summary, a bounded or unknown one to its reason.  Both read the
JSON-able document of formal.cli.matrix only."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from html import escape
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from formal.model.properties import PROPERTIES
from formal.model.state import CONFIGS
from specs import POLICIES

# Verdict -> (colour, legend).  Refuted is the alarm: a counterexample the concrete MMU replays.
COLOURS = {
    "proved": ("#2e7d32", "proved (a certificate re-checked by a second solver)"),
    "refuted": ("#c62828", "refuted (a counterexample, confirmed and replayed)"),
    "bounded": ("#f9a825", "bounded (no violation within the bound: NOT a proof)"),
    "unknown": ("#757575", "unknown (timeout, solver failure, a dead worker: see the reason)"),
}
_RICH = {"proved": "bold green", "refuted": "bold red", "bounded": "yellow", "unknown": "dim"}


def kind(verdict: str) -> str:
    """proved, refuted, bounded or unknown (bounded(N) is bounded)."""
    return verdict.split("(")[0]


def _short(cell: dict[str, Any]) -> str:
    """The verdict in a grid square: P, R and the counterexample's length, B and the bound, ?."""
    v = kind(cell["verdict"])
    proof = cell["proof"] or {}
    if v == "refuted":
        return f"R{proof.get('bound', '')}"
    if v == "bounded":
        return f"B{cell['verdict'][len('bounded('):-1]}"
    return {"proved": "P", "unknown": "?"}[v]


def table(doc: dict[str, Any], console: Console) -> None:
    """The matrix as a terminal table: a row per (policy, configuration), a column per
    property; each entry the verdict, the engine and the seconds."""
    t = Table(title=f"flushproof matrix: engine {doc['engine']}, bound {doc['bound']}")
    t.add_column("policy")
    t.add_column("config")
    for p in doc["properties"]:
        t.add_column(p)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for c in doc["cells"]:
        rows.setdefault((c["policy"], c["config"]), {})[c["property"]] = c
    for (policy, config), cells in rows.items():
        entries = []
        for p in doc["properties"]:
            c = cells[p]
            entries.append(Text(f"{c['verdict']} {c['engine']} {c['seconds']:.1f}s",
                                style=_RICH[kind(c["verdict"])]))
        t.add_row(policy, config, *entries)
    console.print(t)
    counts = ", ".join(f"{n} {v}" for v, n in doc["counts"].items())
    console.print(f"{len(doc['cells'])} cells: {counts}; {doc['wall_seconds']:.1f}s on "
                  f"{_runner(doc)}", highlight=False)


def _runner(doc: dict[str, Any]) -> str:
    r = doc["runner"]
    if r["kind"] == "dask":
        return f"the Dask cluster at {r['scheduler']}"
    return f"{r['jobs']} local processes ({doc['cores']} cores, load {doc['load']})"


def anchor(index: int, cell: dict[str, Any]) -> str:
    """The id of a cell's details on the page (unique by index, readable by name)."""
    name = f"{cell['policy']}-{cell['config']}-{cell['property']}"
    return f"cell-{index}-" + re.sub(r"[^A-Za-z0-9._-]", "_", name)


# Grid geometry, in SVG user units.
_LABEL, _W, _H, _HEAD = 190, 62, 26, 44


def svg(doc: dict[str, Any]) -> str:
    """The grid: a row per policy, a column per (configuration, property), a linked square per
    cell, and the legend below."""
    policies, configs, props = doc["policies"], doc["configs"], doc["properties"]
    index = {(c["policy"], c["config"], c["property"]): i for i, c in enumerate(doc["cells"])}
    legend_width = 34 + 6.5 * max(len(legend) for _, legend in COLOURS.values())
    width = max(_LABEL + _W * len(configs) * len(props), legend_width) + 10
    legend_y = _HEAD + _H * len(policies) + 16
    height = legend_y + 22 * len(COLOURS) + 6
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" '
           'role="img" aria-label="verdict matrix">']
    for j, config in enumerate(configs):
        x = _LABEL + j * _W * len(props)
        out.append(f'<text x="{x + _W * len(props) / 2}" y="14" text-anchor="middle" '
                   f'font-weight="bold">{escape(config)}</text>')
        for k, prop in enumerate(props):
            out.append(f'<text x="{x + k * _W + _W / 2}" y="{_HEAD - 8}" '
                       f'text-anchor="middle">{escape(prop)}</text>')
    for r, policy in enumerate(policies):
        y = _HEAD + r * _H
        out.append(f'<text x="{_LABEL - 8}" y="{y + _H / 2 + 4}" text-anchor="end">'
                   f'{escape(policy)}</text>')
        for j, config in enumerate(configs):
            for k, prop in enumerate(props):
                i = index.get((policy, config, prop))
                if i is None:
                    continue
                out.append(_square(i, doc["cells"][i], _LABEL + (j * len(props) + k) * _W, y))
    for n, (v, (colour, legend)) in enumerate(COLOURS.items()):
        y = legend_y + 22 * n
        out.append(f'<rect x="10" y="{y}" width="16" height="16" fill="{colour}" '
                   f'class="legend" data-verdict="{v}"/>'
                   f'<text x="34" y="{y + 12}">{escape(legend)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _square(i: int, cell: dict[str, Any], x: float, y: float) -> str:
    v = kind(cell["verdict"])
    tip = (f"{cell['policy']} {cell['config']} {cell['property']}: {cell['verdict']} by "
           f"{cell['engine']}, {cell['seconds']:.1f}s")
    return (f'<a href="#{escape(anchor(i, cell))}" data-verdict="{escape(v)}">'
            f'<title>{escape(tip)}</title>'
            f'<rect x="{x + 1}" y="{y + 1}" width="{_W - 2}" height="{_H - 2}" '
            f'fill="{COLOURS[v][0]}"/>'
            f'<text x="{x + _W / 2}" y="{y + _H / 2 + 4}" text-anchor="middle" '
            f'fill="{"#222" if v == "bounded" else "white"}">{escape(_short(cell))}</text></a>')


def _details(i: int, cell: dict[str, Any]) -> str:
    v = kind(cell["verdict"])
    proof = cell["proof"] or {}
    head = (f'<section id="{escape(anchor(i, cell))}" class="{escape(v)}">'
            f'<h3>{escape(cell["policy"])} &middot; {escape(cell["config"])} &middot; '
            f'{escape(cell["property"])}: {escape(cell["verdict"])}</h3>')
    build = "" if cell["shared_seconds"] is None else \
        f" after {cell['shared_seconds']:.1f}s of work shared with the other cells of " \
        f"{escape(cell['policy'])} in {escape(cell['config'])} (the relation, the event checks)"
    lines = [head, f"<p>engine {escape(cell['engine'])}, {cell['seconds']:.1f}s{build}, on "
                   f"{escape(cell['worker'])}</p>"]
    if v == "proved":
        checker = proof.get("checker") or {}
        lines.append(f"<p>Certificate: {escape(str(proof.get('certificate')))}</p>")
        if checker:
            lines.append(f"<p>Re-checked by {escape(checker['solver'])} "
                         f"({checker['queries']} queries answered unsat).</p>")
    elif v == "refuted":
        again = f" --policy-file {cell['policy_file']}" if cell["policy_file"] else ""
        lines.append(f"<p>Counterexample of {proof.get('bound')} events; concrete replay: "
                     f"{escape(str(proof.get('replay')))}</p>")
        lines.append(f"<p>Replay: save the trace below as <code>cex.json</code>, then "
                     f"<code>flushproof replay cex.json{escape(again)}</code> (the concrete "
                     f"MMU) or <code>flushproof simulate cex.json{escape(again)}</code> (the "
                     "model).</p>")
        lines.append("<details><summary>trace (flushproof-trace/1)</summary><pre>"
                     f"{escape(json.dumps(proof.get('trace'), indent=1))}</pre></details>")
    else:
        lines.append(f"<p>Reason: {escape(cell['reason'] or 'none given')}</p>")
    if cell["text"]:
        opened = " open" if v == "refuted" else ""
        lines.append(f"<details{opened}><summary>flushproof prove's report</summary>"
                     f"<pre>{escape(cell['text'])}</pre></details>")
    lines.append('<p><a href="#grid">back to the grid</a></p></section>')
    return "\n".join(lines)


def _coverage(doc: dict[str, Any]) -> Iterable[str]:
    """What the page leaves out: bounded cells, and the policies, configurations and
    properties not asked for."""
    bounded = doc["counts"]["bounded"]
    if bounded:
        yield (f"{bounded} of {len(doc['cells'])} cells are bounded: no violation within "
               f"{doc['bound']} events, which is NOT a proof.")
    for what, asked, every in (("configurations", doc["configs"], CONFIGS),
                               ("properties", doc["properties"], PROPERTIES),
                               ("shipped policies", doc["policies"], POLICIES)):
        missing = [x for x in every if x not in asked]
        if missing:
            yield f"Not covered: the {what} {', '.join(missing)}."


_STYLE = """body{font-family:sans-serif;margin:2em;max-width:90em;color:#222}
pre{background:#f4f4f4;padding:.6em;overflow-x:auto;font-size:12px}
section{border-top:1px solid #ccc;margin-top:1em}
section.refuted h3{color:#c62828}section.proved h3{color:#2e7d32}
.partial{background:#fff3cd;border:1px solid #f9a825;padding:.6em}
table.params td{padding:0 1em 0 0}"""


def html(doc: dict[str, Any], command: str) -> str:
    """The self-contained page (no external assets): the parameters, what is not covered,
    the grid, and every cell's details.  command: how the page was made."""
    counts = ", ".join(f"{n} {escape(v)}" for v, n in doc["counts"].items())
    params = [("command", f"<code>{escape(command)}</code>"),
              ("engine, bound, timeout", escape(f"{doc['engine']}, {doc['bound']}, "
                                                f"{doc['timeout'] or 'none'}")),
              ("run", escape(f"{doc['started']}, {doc['wall_seconds']:.1f}s on "
                             f"{_runner(doc)}")),
              ("cells", f"{len(doc['cells'])}: {counts}")]
    partial = "".join(f"<p>{escape(line)}</p>" for line in _coverage(doc))
    body = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>flushproof verdict matrix</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>flushproof verdict matrix</h1>",
        '<table class="params">' + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>"
                                           for k, v in params) + "</table>",
        f'<div class="partial"><strong>Partial.</strong>{partial}</div>' if partial else "",
        '<h2 id="grid">Grid</h2>', svg(doc),
        "<h2>Cells</h2>",
        *(_details(i, c) for i, c in enumerate(doc["cells"])),
        "</body></html>",
    ]
    return "\n".join(b for b in body if b) + "\n"
