"""`flushproof matrix` (formal.cli.matrix, docs/matrix.md): the same small matrix on the local
process pool and on a 2-worker Dask LocalCluster gives the same verdicts; a worker that dies
gives `unknown` for its cells with the reason, and loses no other cell; the JSON follows its
schema; the HTML page's grid colours and links each cell."""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import dask
import pytest
from distributed import LocalCluster

from formal.cli import matrix, matrix_render, policies, schemas
from formal.cli.main import main
from formal.engines.search import Verdict

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "v6_6_no_smap_reset.py"
# v6.6 has no metadata violation within two events on tdp (bound 1 fails the vacuity check:
# rsm needs an smi first); the example (CR4.SMAP dropped from the reset bits) has one, in one
# event (docs/policies.md).  Each cell takes 5-10 s on an idle core, mostly symbolic execution.
SMALL = ["matrix", "--policy", "v6.6", "--policy-file", str(EXAMPLE), "--config", "tdp",
         "--property", "metadata", "--engine", "bmc", "--bound", "2"]
EXPECTED = {"v6.6": "bounded(2)", "v6.6-no-smap-reset": "refuted"}

# A policy whose file kills the process loading it in any worker (os._exit: no exception, no
# clean-up, as an out-of-memory kill); the command's own process loads it fine.
DYING = '''import multiprocessing
import os

from specs.v6_6 import V6_6

if multiprocessing.parent_process() is not None:
    os._exit(9)


class Dying(V6_6):
    name = "v6.6-dying"
'''


@pytest.fixture(scope="module", autouse=True)
def forget_loaded_policies():
    """The policy files loaded here are this module's only (other tests list every policy)."""
    loaded, files = dict(policies._LOADED), dict(policies._FILES)
    yield
    policies._LOADED.clear()
    policies._LOADED.update(loaded)
    policies._FILES.clear()
    policies._FILES.update(files)


@pytest.fixture(scope="module")
def cluster():
    # A task whose worker dies is KilledWorker at once, not after 3 more deaths.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None) as c:
        yield c


def run(argv: list[str], out: Path) -> tuple[int, dict]:
    status = main(argv + ["--json", str(out / "m.json"), "--html", str(out / "m.html")])
    doc = json.loads((out / "m.json").read_text())
    schemas.output_validator("matrix-result").validate(doc)
    return status, doc


def verdicts(doc: dict) -> dict[str, str]:
    return {c["policy"]: c["verdict"] for c in doc["cells"]}


@pytest.fixture(scope="module")
def on_pool(tmp_path_factory) -> tuple[int, dict, str]:
    out = tmp_path_factory.mktemp("pool")
    status, doc = run(SMALL + ["--jobs", "2"], out)
    return status, doc, (out / "m.html").read_text()


def test_the_pool_decides_each_cell_and_exits_2_for_a_bounded_one(on_pool):
    status, doc, _ = on_pool
    assert status == 2  # one cell bounded: not every cell is decided
    assert verdicts(doc) == EXPECTED
    assert doc["runner"] == {"kind": "pool", "scheduler": None, "jobs": 2}
    assert doc["counts"] == {"proved": 0, "refuted": 1, "bounded": 1, "unknown": 0}
    refuted = next(c for c in doc["cells"] if c["verdict"] == "refuted")
    proof = refuted["proof"]
    assert (proof["bound"], proof["violation"]["property"]) == (1, "metadata")
    assert proof["replay"].startswith("confirmed")
    assert refuted["policy_file"] == f"{EXAMPLE}:V6_6NoSmapReset"
    assert "VIOLATION metadata" in refuted["text"]


def test_a_dask_cluster_gives_the_pool_s_verdicts(on_pool, cluster, tmp_path):
    status, doc = run(SMALL + ["--scheduler", cluster.scheduler_address], tmp_path)
    assert (status, verdicts(doc)) == (on_pool[0], verdicts(on_pool[1]))
    assert doc["runner"] == {"kind": "dask", "scheduler": cluster.scheduler_address,
                             "jobs": None}
    pool_cell = {c["policy"]: c["proof"]["violation"] for c in on_pool[1]["cells"]}
    assert {c["policy"]: c["proof"]["violation"] for c in doc["cells"]} == pool_cell


@pytest.fixture
def dying(tmp_path) -> Path:
    f = tmp_path / "dying.py"
    f.write_text(DYING)
    return f


def _dead(cell: dict) -> str:
    assert (cell["policy"], cell["verdict"], cell["proof"], cell["text"]) == (
        "v6.6-dying", "unknown", None, None)
    return cell["reason"]


def test_a_dead_pool_worker_gives_unknown_with_the_reason_and_loses_no_other_cell(
        dying, tmp_path):
    """The death breaks the pool and fails the other task too: it runs again, alone."""
    argv = ["matrix", "--policy-file", str(EXAMPLE), "--policy-file", str(dying), "--config",
            "tdp", "--property", "metadata", "--engine", "bmc", "--bound", "2", "--jobs", "2"]
    status, doc = run(argv, tmp_path)
    assert status == 4
    innocent, dead = doc["cells"]
    assert (innocent["policy"], innocent["verdict"]) == ("v6.6-no-smap-reset", "refuted")
    assert _dead(dead).startswith("its worker process died (run again alone in a fresh "
                                  "process, it died again): ")
    assert doc["counts"] == {"proved": 0, "refuted": 1, "bounded": 0, "unknown": 1}


def test_a_dead_dask_worker_gives_unknown_with_the_reason(dying, cluster, tmp_path):
    """Dask's other tasks are not disturbed by a death (the pool test shows none is lost)."""
    argv = ["matrix", "--policy-file", str(dying), "--config", "tdp", "--property",
            "metadata", "--engine", "bmc", "--bound", "2",
            "--scheduler", cluster.scheduler_address]
    status, doc = run(argv, tmp_path)
    assert status == 4
    [dead] = doc["cells"]
    reason = _dead(dead)
    assert reason.startswith("its Dask workers died: ") and "run_dask_task" in reason


@pytest.mark.parametrize("argv,needle", [
    (["--scheduler", "localhost:8786"], "--scheduler 'localhost:8786': expected tcp://HOST:PORT"),
    (["--policy", "v9.9"], "unknown policy 'v9.9' (known: "),
    (["--jobs", "0"], "argument --jobs: must be an integer >= 1"),
    (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:8786"], "--jobs sizes the local pool"),
    (["--html", "/nonexistent/m.html"], "--html /nonexistent/m.html: no directory"),
])
def test_bad_options_exit_3_with_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(["matrix", "--config", "tdp"] + argv))
    assert exc.value.code == 3
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_every_cell_decided_exits_0_any_unknown_4_else_any_bounded_2():
    def doc(**counts):
        return {"counts": {"proved": 0, "refuted": 0, "bounded": 0, "unknown": 0} | counts}

    assert matrix.exit_verdict(doc(proved=3, refuted=2)) is None
    assert matrix.exit_verdict(doc(proved=3, bounded=1)) == Verdict.BOUNDED
    assert matrix.exit_verdict(doc(bounded=1, unknown=1)) == Verdict.UNKNOWN


class _Links(HTMLParser):
    """The page's element ids and the text of each section, by id."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, str] = {}
        self.current: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "section":
            self.current = dict(attrs)["id"]
            self.sections[self.current] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.current is not None:
            self.sections[self.current] += data


SVG = "{http://www.w3.org/2000/svg}"


def grid(page: str) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Each grid square's link -> (its verdict, its colour), and each section's text."""
    svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    root = ElementTree.fromstring(svg)
    squares = {}
    for a in root.iter(f"{SVG}a"):
        rect = a.find(f"{SVG}rect")
        squares[a.get("href")] = (a.get("data-verdict"), rect.get("fill"))
    links = _Links()
    links.feed(page)
    return squares, links.sections


def test_the_page_colours_each_cell_and_links_it_to_its_details(on_pool):
    _, doc, page = on_pool
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # no external asset
    squares, sections = grid(page)
    assert sorted(v for v, _ in squares.values()) == ["bounded", "refuted"]
    for href, (verdict, colour) in squares.items():
        assert colour == matrix_render.COLOURS[verdict][0]
        assert href.startswith("#") and href[1:] in sections
    refuted = next(sections[h[1:]] for h, (v, _) in squares.items() if v == "refuted")
    assert "VIOLATION metadata" in refuted  # the counterexample's run
    assert f"flushproof replay cex.json --policy-file {EXAMPLE}:V6_6NoSmapReset" in refuted
    assert '"op": "mov_cr4"' in refuted  # the trace to replay
    bounded = next(sections[h[1:]] for h, (v, _) in squares.items() if v == "bounded")
    assert "Reason: " in bounded
    assert "1 of 2 cells are bounded: no violation within 2 events, which is NOT a proof" in page


def test_a_proved_cell_links_to_its_certificate_and_all_text_is_escaped(on_pool):
    doc = copy.deepcopy(on_pool[1])
    cell = next(c for c in doc["cells"] if c["verdict"].startswith("bounded"))
    cell["verdict"] = "proved"
    cell["proof"] = dict(cell["proof"], verdict="proved", certificate="safety <&> for each",
                         checker={"solver": "yices", "queries": 7})
    cell["policy"] = doc["policies"][0] = "<script>alert(1)</script>"
    doc["counts"] = matrix.summary(doc["cells"])
    page = matrix_render.html(doc, "flushproof matrix --policy '<b>'")
    assert "<script>" not in page and "<b>" not in page
    squares, sections = grid(page)
    href = next(h for h, (v, _) in squares.items() if v == "proved")
    assert "Certificate: safety <&> for each" in sections[href[1:]]
    assert "Re-checked by yices (7 queries answered unsat)." in sections[href[1:]]
