"""Stored runs -> figures and a report: per machine class and test each case's history (show.
history_plots), the speedup trend, throughput against batch size, the latest run against the run
before it per test and the epoch breakdown; a markdown summary (for a CI job summary or a
pull-request comment) and one self-contained HTML file."""

from __future__ import annotations

import base64
import html
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from imgbench.core import atomic, table
from imgbench.core.config import MIN_EFFECT
from imgbench.judge import changepoints, compare, memory_rule, speedup, verdict
from imgbench.runs import record
from imgbench.runs.history import History
from imgbench.runs.record import Record, differences
from imgbench.runs.runfile import RunError
from imgbench.show import history_plots, plots

EPOCH_TESTS = ("epoch", "reference_epoch")
# The newest points of each speedup series that get an interval from their runs' rounds
# (figure band, table interval, falls marked): a thousand GPU runs then cost what their last RECENT
# do. Older points: medians.
RECENT = 10


@dataclass
class Comparison:
    base: list[Record]
    cand: list[Record]
    verdicts: list[verdict.Verdict]
    notes: list[str] = field(default_factory=list)  # compare.Judged's


@dataclass
class Machine:
    fingerprint: str
    runs: list[list[Record]]                       # oldest first
    speedups: list[speedup.Speedup] = field(default_factory=list)
    comparison: Comparison | None = None
    changes: list[changepoints.ChangePoint] = field(default_factory=list)
    pending: list = field(default_factory=list)    # changepoints.Scan.pending
    scanned: list[str] = field(default_factory=list)  # the scan's count and expected false ones
    figures: dict[str, list[Path]] = field(default_factory=dict)


@dataclass
class Rendered:
    machines: list[Machine]
    notes: list[str]
    history: History
    accepted: list = field(default_factory=list)   # runs.acceptances.Acceptance

    @property
    def figures(self) -> list[Path]:
        return [p for m in self.machines for paths in m.figures.values() for p in paths]


def by_machine(history: History) -> list[Machine]:
    groups: dict[str, list[list[Record]]] = {}
    for run in history.runs:
        groups.setdefault(run[0].machine, []).append(run)
    return [Machine(fp, runs) for fp, runs in sorted(groups.items())]


def latest_records(runs: list[list[Record]]) -> list[Record]:
    """The newest record of every case across a machine's runs (a GPU run and a CPU run may differ)
    measured like the newest run (its profile, dataset, optimizer)."""
    newest: dict[tuple, Record] = {}
    for run in runs:
        if differences(run[0], runs[-1][0]):
            continue
        for r in run:
            newest[r.key] = r
    return list(newest.values())


def latest_vs_previous(runs: list[list[Record]], min_effect: float, whole=lambda rs: rs,
                       accepted=()) -> Comparison | None:
    """The newest run against the run before it measured under the same conditions (profile,
    dataset, optimizer) sharing cases with it; the runs before that are the history. Runs of other
    conditions (a scratch folder's other datasets, say) are never compared with it. `whole` gives
    the two runs their rounds where the history's records are light (with_rounds). Judged as
    `imgbench compare` judges (compare.runs): the interval with the history's between-run spread,
    the history's bound, no gate on a case without a history."""
    cand = runs[-1]
    keys = {r.key for r in cand}
    earlier = [run for run in runs[:-1]
               if not differences(run[0], cand[0]) and keys & {r.key for r in run}]
    if not earlier:
        return None
    base, cand = whole(earlier[-1]), whole(cand)
    judged = compare.runs(base, cand, earlier[:-1], min_effect, accepted=accepted)
    return Comparison(base, cand, judged.verdicts, judged.notes)


def with_rounds(records: list[Record], notes: list[str]) -> list[Record]:
    """`records` read again whole (per-round data, all extra_info) where they are light
    (runs.history.load with rounds=False): each run file read once, only the records asked for kept.
    A file unreadable now keeps its light records, with a note."""
    wanted: dict[str, set] = {}
    for r in records:
        if r.data is None:
            wanted.setdefault(r.path, set()).add(r.key)
    found = {}
    for path, keys in wanted.items():
        try:
            found.update({(path, x.key): x for x in record.load(path) if x.key in keys})
        except RunError as e:
            notes.append(f"skipped {e}")
    return [found.get((r.path, r.key), r) for r in records]


def recent_with_rounds(series: list[speedup.Speedup], notes: list[str],
                       recent: int = RECENT) -> list[speedup.Speedup]:
    """The newest `recent` points of each case's speedup series without an interval recomputed from
    their runs' rounds; older points stay as they are."""
    by_case: dict[tuple, list[speedup.Speedup]] = {}
    for s in series:
        by_case.setdefault((s.key, s.device), []).append(s)
    redo = [s for points in by_case.values() for s in points[-recent:] if s.ci is None]
    whole = iter(with_rounds([r for s in redo for r in (s.cpu, s.accel)], notes))
    again = {id(s): speedup.pair(next(whole), next(whole), same_run=s.same_run) for s in redo}
    return [again.get(id(s), s) for s in series]


def _label(run: list[Record]) -> str:
    return f"{(run[0].commit or '-')[:7]} {run[0].datetime[:16]} ({Path(run[0].path).name})"


def _latest(m: Machine, out: Path, svg: bool, min_effect: float, accepted, notes: list[str]):
    """m.comparison (latest_vs_previous) and its figures, one per test; why not, in `notes`."""
    slug = m.fingerprint
    try:
        m.comparison = latest_vs_previous(m.runs, min_effect,
                                          lambda run: with_rounds(run, notes), accepted)
    except compare.CompareError as e:
        # e.g. a case run under other numeric conditions: said, not raised
        notes.append(f"{slug}: the latest run is not compared with the run before it: {e}")
        return
    c = m.comparison
    if c is None:
        notes.append(f"{slug}: no earlier run of the same profile, dataset, optimizer and "
                     "thread count: the latest run has no baseline to compare with")
        return
    notes.extend(f"{slug}: latest run: {n}" for n in c.notes)
    # contended: listed, not drawn
    drawn = [v for v in c.verdicts if v.verdict in plots.VERDICT_COLORS]
    for test in sorted({v.test for v in drawn}):
        fig = plots.versus_baseline([v for v in drawn if v.test == test], test, slug,
                                    _label(c.base), _label(c.cand))
        m.figures.setdefault("latest vs baseline", []).extend(
            plots.save(fig, out, f"vs_baseline_{slug}_{test}", svg))


def render(history: History, out: Path, svg: bool = False, min_effect: float = MIN_EFFECT,
           accepted=()) -> Rendered:
    """`accepted`: the acceptances of the history's folders (runs.acceptances.read), so the latest
    run is judged against the same window as the gate judges it."""
    notes = [f"skipped {line}" for line in history.skipped]
    if len(history.versions) > 1:
        notes.append(f"runs written by pytest-benchmark {', '.join(sorted(history.versions))}: "
                     "read alike")
    machines = by_machine(history)
    for m in machines:
        slug = m.fingerprint
        m.speedups = recent_with_rounds(speedup.series(m.runs), notes)
        scan = changepoints.scan(m.runs, speedups=m.speedups)
        m.changes, m.pending, m.scanned = scan.changes, scan.pending, changepoints.summary(scan)
        m.figures["history"] = history_plots.draw(m.runs, slug, out, svg, m.changes, m.pending,
                                                  accepted)
        if m.speedups:
            fell = compare.speedup_falls(m.speedups, min_effect)
            m.figures["speedup trend"] = plots.save(
                plots.speedup_trend(m.speedups, slug, fell, m.changes), out, f"speedup_{slug}", svg)
        apart = Counter("; ".join(d) for run in m.runs if (d := differences(run[0], m.runs[-1][0])))
        notes.extend(f"{slug}: {n} run(s) measured otherwise ({what}, against the latest run's) "
                     "are reported apart: their change points have series of their own, and none "
                     "is compared with the latest run"
                     for what, n in sorted(apart.items()))
        # the figures draw extra_info the index leaves out
        latest = with_rounds(latest_records(m.runs), notes)
        if any(r.test in plots.TEST_STYLES for r in latest):
            m.figures["throughput"] = plots.save(plots.throughput(latest, slug), out,
                                                 f"throughput_{slug}", svg)
        _latest(m, out, svg, min_effect, accepted, notes)
        if any(r.test == "ddp" for r in latest):
            m.figures["ddp scaling"] = plots.save(plots.ddp_scaling(latest, slug), out,
                                                  f"ddp_{slug}", svg)
        epochs = [r for r in latest if r.test in EPOCH_TESTS and "data_stall_share" in r.extra]
        if epochs:
            m.figures["epoch breakdown"] = plots.save(plots.epoch_breakdown(epochs, slug), out,
                                                      f"epoch_{slug}", svg)
    if not any(m.speedups for m in machines):
        seen = sorted({str(r.params.get("device", "cpu")) for run in history.runs for r in run})
        notes.append("no GPU-over-CPU speedup: no machine has the same case timed on the CPU "
                     f"and an accelerator (devices in these runs: {', '.join(seen)})")
    # a file unreadable now is named once
    return Rendered(machines, list(dict.fromkeys(notes)), history, list(accepted))


def speedup_tables(m: Machine) -> list[str]:
    """Per test: rows = case without batch size, columns = batch sizes; latest speedup and its
    interval."""
    latest: dict[tuple, speedup.Speedup] = {}
    for s in m.speedups:
        latest[(s.key, s.device)] = s
    out = []
    for test in sorted({s.test for s in latest.values()}):
        cells: dict[str, dict[int, str]] = {}
        for s in latest.values():
            if s.test != test:
                continue
            params = dict(s.key[1])
            row = f"{plots.describe(params, ('batch_size',))} ({s.device})"
            ci = f" ({s.ci[0]:.1f}–{s.ci[1]:.1f})" if s.ci else ""
            cells.setdefault(row, {})[int(params.get("batch_size", 0))] = f"{s.speedup:.1f}x{ci}"
        sizes = sorted({b for row in cells.values() for b in row})
        head = ["case"] + [f"batch {b}" if b else "-" for b in sizes]
        rows = [[row] + [cells[row].get(b, "") for b in sizes] for row in sorted(cells)]
        out.append(f"### {m.fingerprint}: {test}\n\n" + table.render(head, rows, markdown=True))
    return out


def markdown(r: Rendered, out: Path) -> str:
    runs = r.history.runs
    dates = sorted(run[0].datetime for run in runs)
    md = ["# imgbench report", "",
          f"{_n(len(runs), 'run')} from {_n(len(r.machines), 'machine class', 'machine classes')}, "
          f"{dates[0][:10]} to {dates[-1][:10]}.", "",
          "## GPU-over-CPU speedup (latest run of each case)", "",
          "speedup = median CPU time / median accelerator time of the same case; in brackets the "
          "99% interval over both cases' rounds (each log median with its autocorrelation-aware "
          "standard error).", ""]
    tables = [t for m in r.machines for t in speedup_tables(m)]
    md += ["\n\n".join(tables) if tables else "No speedup: no machine timed the same case on the "
           "CPU and an accelerator.", ""]
    md += ["## Latest run against its baseline", ""]
    for m in r.machines:
        c = m.comparison
        if c is None:
            md += [f"- {m.fingerprint}: only one run of its profile, nothing to compare.", ""]
            continue
        counts = {k: [v for v in c.verdicts if v.verdict == k] for k in verdict.VERDICTS}
        md += [f"### {m.fingerprint}: {_label(c.cand)} vs {_label(c.base)}", "",
               ", ".join(f"{len(v)} {k}" for k, v in counts.items()) + ".", ""]
        for kind in (verdict.REGRESSION, verdict.IMPROVEMENT):
            if counts[kind]:
                md += [f"**{kind.capitalize()}s**", "",
                       verdict.render(counts[kind], markdown=True), ""]
        # by compare's default rule, the earlier runs as its history (the CPU figure not gated)
        past = [run for run in m.runs if run and run[0].path != c.cand[0].path]
        grew = [v for v in memory_rule.compare(c.base, c.cand, past=past)
                if v.verdict == verdict.REGRESSION]
        if grew:
            md += ["**Memory regressions** (peak memory)", "",
                   memory_rule.render(grew, markdown=True), ""]
        if counts[verdict.CONTENDED]:
            md += [f"**{verdict.CONTENDED.capitalize()}** (no verdict)", ""]
            md += [f"- {v.name}: {v.why}" for v in counts[verdict.CONTENDED]] + [""]
    md += ["## Change points in the history", "",
           "E-divisive means over each case's median time per run and each speedup series, each "
           f"split at p <= {changepoints.P_MAX:g}; ratio = after / before (time: > 1 slower; "
           "speedup: < 1 the accelerator lost ground).", ""]
    for m in r.machines:
        md += [f"### {m.fingerprint}", "", changepoints.render_machine(m.changes, markdown=True)
               if m.changes else "No change point.", ""]
        if m.pending:
            md += ["Slowdowns at the series' ends, too recent to be change points:", ""]
            md += changepoints.render_pending(m.pending) + [""]
        md += [f"- {line}" for line in m.scanned] + [""]
    md += ["## Accepted levels", "", accepted_table(r.accepted), ""]
    md += ["## Figures", ""]
    for m in r.machines:
        for kind, paths in m.figures.items():
            md += [f"- {m.fingerprint}, {kind}: " + ", ".join(f"`{p}`" for p in paths)]
    if r.notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    return "\n".join(md) + "\n"


def accepted_table(accepted) -> str:
    """The acceptances (runs.acceptances.Acceptance) the history's folders hold, oldest first: from
    each, the cases it names are judged against their level since."""
    if not accepted:
        return "None: every case is judged against its whole history window."
    rows = [[a.datetime[:16].replace("T", " "), ", ".join(a.cases) or "every case",
             a.fingerprint or "any", f"`{a.path}`"]
            for a in sorted(accepted, key=lambda a: (a.datetime, a.path))]
    return table.render(["accepted", "cases", "machine class", "file"], rows, markdown=True)


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def to_html(md: str, images: list[Path]) -> str:
    """The markdown this module writes (headings, paragraphs, lists, tables) as HTML, figures
    embedded."""
    body, table = [], []

    def inline(text: str) -> str:
        text = html.escape(text)
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", text)

    def flush():
        if table:
            rows = [[c.strip() for c in line.strip("|").split("|")] for line in table
                    if not line.startswith("|-")]
            body.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in rows[0]) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>"
                                  for row in rows[1:]) + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if m := re.match(r"(#+) (.*)", line):
            body.append(f"<h{len(m[1])}>{inline(m[2])}</h{len(m[1])}>")
        elif line.startswith("- "):
            body.append(f"<ul><li>{inline(line[2:])}</li></ul>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    flush()
    for p in images:
        if p.suffix == ".png":
            data = base64.b64encode(p.read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(p.stem)}" '
                        f'src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(p.name)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}"
             "ul{margin:0}")
    return ('<!doctype html>\n<html><head><meta charset="utf-8"><title>imgbench report</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write(r: Rendered, out: Path) -> tuple[str, Path, Path]:
    md = markdown(r, out)
    md_path, html_path = out / "report.md", out / "report.html"
    for path, text in ((md_path, md), (html_path, to_html(md, r.figures))):
        with atomic.written(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return md, md_path, html_path
