"""`report`'s page: one HTML file with everything inline (CSS, the DAG and timeline as
SVG, the stages' pictures as data: URIs), no script and no reference to the network.

Every value from the run dir goes through html.escape: a stage's stderr, a hold reason or
a path is text, never markup.
"""

from __future__ import annotations

import base64
import math
import tempfile
import time
from html import escape
from pathlib import Path

from aframe_dag import __version__, picture, rundir, write
from aframe_dag.errors import AframeDagError
from aframe_dag.report import Run, StageFigures, no_cycle_collection

# matplotlib's tab10: a colour per stage, in turn
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
)
BADPUT = "#d62728"
DASH = "\u2014"  # EM DASH: no value
MIME = {".png": "image/png", ".svg": "image/svg+xml"}
# the page loads nothing: a browser refuses (and reports) any reference that crept in
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #222; margin: 0 auto; max-width: 1180px; padding: 0 20px 40px; }
h1 { font-size: 24px; margin: 24px 0 2px; }
h2 { font-size: 18px; margin: 30px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.sub, .note { color: #666; }
.note { font-size: 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 20px; }
.card span { color: #666; font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #eee; text-align: right;
         white-space: nowrap; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; vertical-align: bottom; }
th:first-child, td:first-child, table.kv td, table.kv th { text-align: left; }
table.kv th { width: 190px; background: none; }
td.wrap { white-space: normal; word-break: break-all; text-align: left; }
a.bad, .bad { color: #d62728; font-weight: 600; }
.held { color: #b8860b; font-weight: 600; }
.scroll { overflow-x: auto; }
svg { max-width: 100%; height: auto; }
figure { margin: 10px 0 22px; }
figure img { max-width: min(100%, 900px); border: 1px solid #eee; }
figcaption { color: #666; font-size: 12px; }
pre { background: #f7f7f7; border: 1px solid #eee; padding: 8px; overflow-x: auto;
      font-size: 12px; }
code { font-size: 12px; }
article { border-left: 3px solid #d62728; padding: 2px 12px; margin: 10px 0; }
article.held { border-color: #b8860b; color: inherit; font-weight: normal; }
details summary { cursor: pointer; color: #1f4e99; }
"""


def write_page(run: Run, output: Path) -> None:
    """Write the run's page to `output` (atomically)."""
    write.write_file(output, page(run))


@no_cycle_collection()
def page(run: Run) -> str:
    """The whole page."""
    name = _pipeline(run)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
        f"<title>{escape(name)}: run report</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(name)}</h1>",
        f'<p class="sub">{escape(str(run.run_dir))} &middot; {escape(_state(run))}</p>',
        _summary(run),
        _stages(run),
        _timeline(run),
        _dag(run),
        _pictures(run),
        _failures(run),
        _provenance(run),
        f'<p class="note">Made by aframe-dag {escape(__version__)} '
        f"(<code>aframe-dag report</code>) at {_clock(time.time())}.</p>",
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _pipeline(run: Run) -> str:
    try:
        for line in (run.run_dir / rundir.CONFIG).read_text(encoding="utf-8").split("\n"):
            if line.startswith("name:"):
                return line.partition(":")[2].strip().strip("'\"") or run.run_dir.name
    except OSError:
        pass
    return run.run_dir.name


def _state(run: Run) -> str:
    how = {"dagman": "DAGMan run", "local": "run-local run"}.get(run.mode, "not started")
    if run.mode == "not started":
        return "not started: no DAGMan status file, no run-local record"
    when = f", as of {_clock(run.as_of)}" if run.as_of is not None else ""
    return f"{how}, {run.state}{when}"


def _summary(run: Run) -> str:
    t = run.totals
    cards = [
        (f"{t['done']}/{t['nodes']}", "nodes done"),
        (str(t["failed"]), "failed"),
        (str(t["held"]), "held now"),
        (_duration(t["wall_seconds"]), "wall time"),
        (_hours(t["cpu_hours"]), "CPU-hours"),
        (_hours(t["gpu_hours"]), "GPU-hours"),
        (_hours(t["badput_hours"]), "badput hours"),
        (f"{t['attempts']}", f"jobs ({t['retries']} retries)"),
        (f"{t['evictions']} / {t['holds']}", "evictions / holds"),
    ]
    body = "".join(
        f'<div class="card"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for v, k in cards
    )
    return f'<div class="cards">{body}</div>'


def _stages(run: Run) -> str:
    gpu_memory = any(s.gpu_memory_requested for s in run.stages)  # its column, if any asked
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Stage", "Nodes done", "Failed", "Held", "Jobs", "Retries", "Evicted / held",
                  "Queue wait<br>median / max", "Run time<br>median / max", "CPU-h", "GPU-h",
                  "Memory MB<br>asked / used",
                  *(["GPU memory MB<br>asked"] if gpu_memory else []), "Badput h")
    )  # fmt: skip
    rows = []
    for s in run.stages:
        nodes = f"{s.done}/{'?' if s.total is None else s.total}"
        if s.tasks is not None:
            nodes += f" ({s.tasks_done}/{s.tasks} tasks)"
        run_time = f"{_duration(s.run_median)} / {_duration(s.run_max)}"
        if s.task_median is not None:
            run_time += f"<br>a task: {_duration(s.task_median)} / {_duration(s.task_max)}"
        cells = [
            escape(s.name), escape(nodes), _linked(s, s.failed, "bad"),
            _linked(s, s.held, "held"), str(s.attempts), _linked(s, s.retries, "retried"),
            f"{s.evictions} / {_linked(s, s.holds, 'held')}",
            f"{_duration(s.wait_median)} / {_duration(s.wait_max)}",
            run_time, _hours(s.cpu_hours), _hours(s.gpu_hours), escape(_memory(s)),
            *([escape(_asked(s.gpu_memory_requested))] if gpu_memory else []),
            _hours(s.badput_hours),
        ]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    note = (
        "Jobs: every job of the stage's nodes (a retry is a new job). Evicted / held: how "
        "often its jobs were. CPU- and GPU-hours: run time &times; the cpus and gpus each "
        "job's .sub asks for. Memory: what the jobs asked for (each request, in order, when "
        "it grew) and the most one used. "
        + (
            "GPU memory: what the jobs asked of a GPU (each request, in order: with "
            "GPU-memory retries, twice as much at each start). "
            if gpu_memory
            else ""
        )
        + "Badput: run time of executions that did not end in success (evicted, held, "
        "failed, removed)."
    )
    return (
        f'<h2 id="stages">Stages</h2><div class="scroll"><table><tr>{head}</tr>'
        f'{"".join(rows)}</table></div><p class="note">{note}</p>'
    )


def _linked(stage: StageFigures, count: int, kind: str) -> str:
    if not count:
        return "0"
    return f'<a class="{kind}" href="#failures-{escape(stage.name)}">{count}</a>'


def _memory(stage: StageFigures) -> str:
    used = DASH if stage.memory_used is None else stage.memory_used
    return f"{_asked(stage.memory_requested)} / {used}"


def _asked(asked: list[int]) -> str:
    return " \u2192 ".join(str(m) for m in asked) if asked else DASH


# --- timeline -----------------------------------------------------------------------

WIDTH, LABELS, LANE, GAP, BINS = 960, 170, 26, 8, 390


def occupancy(runs: list[tuple[float, float]], start: float, end: float) -> list[float]:
    """How many of `runs` executed, on average, in each of BINS equal slices of
    [start, end] (whole slices by a difference array: linear in runs and BINS)."""
    width = (end - start) / BINS
    whole, part = [0.0] * (BINS + 1), [0.0] * BINS
    for first, last in runs:
        a = min(max((first - start) / width, 0.0), BINS)
        b = min(max((last - start) / width, 0.0), BINS)
        i, j = min(int(a), BINS - 1), min(int(b), BINS - 1)
        if i == j:
            part[i] += b - a
            continue
        part[i] += i + 1 - a
        part[j] += b - j
        whole[i + 1] += 1
        whole[j] -= 1
    result, running = [], 0.0
    for k in range(BINS):
        running += whole[k]
        result.append(running + part[k])
    return result


def peak(runs: list[tuple[float, float]]) -> int:
    """The most runs executing at once."""
    edges = sorted([(a, 1) for a, _ in runs] + [(b, -1) for _, b in runs])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def _timeline(run: Run) -> str:
    lanes = []
    for stage in run.stages:
        good: list[tuple[float, float]] = []
        bad: list[tuple[float, float]] = []
        for node_attempts in run.attempts.get(stage.name, {}).values():
            for attempt in node_attempts:
                for first, last, how in attempt.runs:
                    if last is not None:
                        (good if how in ("success", "running") else bad).append((first, last))
        if good or bad:
            lanes.append((stage.name, good, bad))
    title = '<h2 id="timeline">Timeline</h2>'
    if not lanes:
        return title + '<p class="note">No job has executed yet.</p>'
    start = min(a for _, good, bad in lanes for a, _ in good + bad)
    end = max(b for _, good, bad in lanes for _, b in good + bad)
    end = max(end, start + 1.0)
    shortest = (end - start) / BINS  # a job shorter than a slice (0 s in whole seconds) shows
    plot = WIDTH - LABELS - 10
    height = len(lanes) * (LANE + GAP) + 30
    step = plot / BINS
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">'
    ]
    for k in range(6):  # the time axis: six ticks
        x = LABELS + plot * k / 5
        svg.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 22}" stroke="#eee"/>')
        anchor = "start" if k == 0 else "end" if k == 5 else "middle"
        label = escape(_duration((end - start) * k / 5))
        svg.append(
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="{anchor}" fill="#666">{label}</text>'
        )
    for row, (name, good, bad) in enumerate(lanes):
        top = row * (LANE + GAP) + 4
        base = top + LANE
        most = max(peak(good + bad), 1)
        scale = LANE / most
        color = COLORS[[s.name for s in run.stages].index(name) % len(COLORS)]
        ran = occupancy(_at_least(good, shortest), start, end)
        wasted = occupancy(_at_least(bad, shortest), start, end)
        # no higher than the most at once: widened short jobs may overlap where they did not
        ran = [min(r, most) for r in ran]
        total = [min(r + w, most) for r, w in zip(ran, wasted, strict=True)]
        svg.append(
            f'<text x="{LABELS - 8}" y="{base - 8}" text-anchor="end">{escape(name)}'
            f'<tspan fill="#888"> max {most}</tspan></text>'
        )
        svg.append(
            f'<line x1="{LABELS}" y1="{base}" x2="{LABELS + plot}" y2="{base}" stroke="#ccc"/>'
        )
        for values, fill in ((total, BADPUT), (ran, color)):
            if any(values):
                path = _steps(values, base, scale, step)
                tip = f"{escape(name)}: at most {most} at once"
                svg.append(f'<path d="{path}" fill="{fill}"><title>{tip}</title></path>')
    svg.append("</svg>")
    note = (
        f"From {_clock(start)} to {_clock(end)}. Each lane: how many of the stage's jobs "
        f"were executing (a lane is as high as its most at once, max N); "
        f'<span class="bad">red</span>: executions that did not end in success. '
        "A gap is time the stage had nothing executing."
    )
    return f'{title}<div class="scroll">{"".join(svg)}</div><p class="note">{note}</p>'


def _at_least(runs: list[tuple[float, float]], seconds: float) -> list[tuple[float, float]]:
    return [(first, max(last, first + seconds)) for first, last in runs]


def _steps(values: list[float], base: float, scale: float, step: float) -> str:
    """An SVG path: the step outline of `values` over the baseline, closed."""
    points = [f"M{LABELS},{base:.1f}"]
    for k, value in enumerate(values):
        y = base - value * scale
        points.append(f"L{LABELS + k * step:.1f},{y:.1f}L{LABELS + (k + 1) * step:.1f},{y:.1f}")
    points.append(f"L{LABELS + len(values) * step:.1f},{base:.1f}Z")
    return "".join(points)


# --- the DAG, pictures, failures, provenance ------------------------------------------------


def _dag(run: Run) -> str:
    title = '<h2 id="dag">DAG</h2>'
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "dag.svg"
            picture.render(picture.to_dot(run.run_dir), out)
            svg = out.read_text(encoding="utf-8")
    except AframeDagError as exc:  # graphviz missing, say: the page without the drawing
        return f'{title}<p class="note">Not drawn: {escape(str(exc))}</p>'
    svg = svg[svg.index("<svg") :]  # no XML prolog or DOCTYPE inside HTML
    note = "As <code>aframe-dag graph</code> draws it: complete nodes shaded, failed in red."
    return f'{title}<div class="scroll">{svg}</div><p class="note">{note}</p>'


def _pictures(run: Run) -> str:
    if not run.pictures:
        return ""
    parts = ['<h2 id="pictures">Pictures</h2>']
    for item in run.pictures:
        path = Path(item.path)
        try:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
        except OSError as exc:
            parts.append(f"<p>{escape(item.path)}: cannot read: {escape(str(exc.strerror))}</p>")
            continue
        mime = MIME[path.suffix.lower()]
        caption = f"{item.stage}: {item.path} ({_size(item.size)})"
        parts.append(
            f'<figure><img alt="{escape(path.name)}" src="data:{mime};base64,{data}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    return "".join(parts)


def _failures(run: Run) -> str:
    if not run.failures:
        return ""
    parts = ['<h2 id="failures">Failed and held nodes</h2>']
    for stage in dict.fromkeys(f.stage for f in run.failures):
        parts.append(f'<div id="failures-{escape(stage)}"><h3>{escape(stage)}</h3>')
        for f in (f for f in run.failures if f.stage == stage):
            what = [f"<b>{escape(f.name)}</b> {f.state}"]
            if f.job:
                what.append(f"job {escape(f.job)}")
            if f.exit_code is not None:
                what.append(f"exit code {f.exit_code}")
            lines = [", ".join(what), f"<br>{escape(f.reason)}" if f.reason else ""]
            if f.stderr:
                lines.append(f"<br>stderr: <code>{escape(f.stderr)}</code>")
            if f.tail:
                lines.append(f"<pre>{escape(chr(10).join(f.tail))}</pre>")
            kind = "held" if f.state.startswith("held") else ""
            parts.append(
                f'<article class="{kind}" id="node-{escape(f.name)}">{"".join(lines)}</article>'
            )
        parts.append("</div>")
    return "".join(parts)


def _provenance(run: Run) -> str:
    p = run.provenance
    dev = p.get("dev")
    checkout = "not used"
    if dev:
        state = {True: "dirty", False: "clean", None: "not a git checkout"}[dev["dirty"]]
        checkout = f"{dev['path']} at {dev['commit'] or '?'} ({state}, now)"
    htcondor = p.get("htcondor") or "(no .dagman.out)"
    rows = [
        ("aframe-dag", f"{p.get('built_with') or '?'} built it; {p['aframe_dag']} made this"),
        ("Command line", p.get("command") or "not recorded (built by an older aframe-dag)"),
        ("Built in", p.get("cwd") or "?"),
        ("Build host", p.get("build_host") or "?"),
        ("Python", f"{p.get('build_python') or '?'} built it; {p['python']} made this"),
        ("HTCondor", f"DAGMan {htcondor}; bindings {p.get('htcondor_bindings') or '?'}"),
        ("Submit host", ", ".join(p.get("submit_hosts") or []) or "(no node log names one)"),
        ("--dev checkout", checkout),
    ]
    table = "".join(
        f'<tr><th>{escape(k)}</th><td class="wrap">{escape(v)}</td></tr>' for k, v in rows
    )
    files = [("Images", p.get("images", []))]
    files.append(("Pictures", [vars(x) for x in run.pictures]))
    parts = ['<h2 id="provenance">Provenance</h2>', f'<table class="kv">{table}</table>']
    for title, items in files:
        if not items:
            continue
        head = "<tr><th>Stage</th><th>Path</th><th>Size</th><th>Modified</th><th>sha256</th></tr>"
        body = "".join(
            f'<tr><td>{escape(i["stage"])}</td><td class="wrap">{escape(i["path"])}</td>'
            f"<td>{_size(i['size'])}</td><td>{_clock(i['mtime'])}</td>"
            f"<td><code>{escape(i['sha256'] or DASH)}</code></td></tr>"
            for i in items
        )
        parts.append(f'<h3>{title}</h3><div class="scroll"><table>{head}{body}</table></div>')
    try:
        config = (run.run_dir / rundir.CONFIG).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        config = f"cannot read: {exc.strerror}"
    parts.append(
        f"<details><summary>config.yaml, the resolved config of this run dir</summary>"
        f"<pre>{escape(config)}</pre></details>"
    )
    return "".join(parts)


# --- units -------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "\u2014"
    if seconds < 10:
        return f"{seconds:.2g} s" if seconds else "0 s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def _hours(hours: float) -> str:
    """Hours, two significant digits below 1 (0.000063 for a short job), else 0.1 h."""
    if not hours:
        return "0"
    if hours < 0:  # log times that went back (a clock set back, local time at a DST change)
        return "-" + _hours(-hours)
    return f"{hours:.{1 - math.floor(math.log10(hours))}f}" if hours < 1 else f"{hours:,.1f}"


def _size(size: int | None) -> str:
    if size is None:
        return "missing"
    if size < 1024:
        return f"{size} B"
    power = min(int(math.log(size, 1024)), 4)
    return f"{size / 1024**power:.3g} {'BKMGT'[power]}{'iB' if power else ''}"


def _clock(when: float | None) -> str:
    if when is None:
        return "\u2014"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
