"""One self-contained HTML page about a run or a sweep (`dlbench report`): what ran, the final
metrics, the curves, and the pictures the run logged (confusion matrices, sample grids); for a
sweep, the table of its jobs and their curves overlaid.

The page is a single file to mail or attach to a lesson: the pictures are embedded PNGs, and
its Content-Security-Policy allows nothing else (no script, no request, no font or style from
elsewhere). A run folder may come from someone else, so everything it holds is text on the
page, never markup: each string goes through `text()` (HTML-escaped, control characters shown),
and a picture is embedded only as the PNG it claims to be (logged.read).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from dlbench import files, logged, summary
from dlbench.terminal import counted, inert

POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1f2328; margin: 0; background: #f6f8fa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 10px; }
.path { color: #59636e; font-family: ui-monospace, monospace; font-size: 13px; word-break: break-all; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px; }
.ok { background: #dafbe1; color: #116329; } .bad { background: #ffebe9; color: #a40e26; }
code, pre { font-family: ui-monospace, monospace; font-size: 13px; }
code { background: #eaeef2; padding: 1px 5px; border-radius: 4px; }
pre { background: #fff; border: 1px solid #d1d9e0; border-radius: 6px; padding: 12px; overflow: auto;
      max-height: 480px; }
table { border-collapse: collapse; background: #fff; border: 1px solid #d1d9e0; font-size: 14px; }
th, td { padding: 5px 12px; border-bottom: 1px solid #d1d9e0; text-align: left; vertical-align: top; }
th { background: #eaeef2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #d1d9e0; border-radius: 6px; padding: 8px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: #59636e; padding-top: 4px; }
details summary { cursor: pointer; color: #0969da; }
.scroll { overflow-x: auto; }
"""

SPLITS = ("train", "val", "test")


def text(value: Any) -> str:
    """Outside data as HTML text: escaped, with control characters shown (`\\x1b`)."""
    return html.escape(inert(str(value), keep="\n\t"))


def number(value: Any) -> str:
    """A metric as a table shows it: 4 significant digits, large values whole (29,647/s)."""
    if not summary.is_number(value):  # (text, NaN, a whole number too large for a float)
        return text(value)
    value = float(value)
    return f"{value:,.0f}" if 1e4 <= abs(value) < 1e15 else f"{value:.4g}"


def png(figure: Any) -> bytes:
    picture = io.BytesIO()
    figure.savefig(picture, format="png", dpi=100)
    return picture.getvalue()


def image(picture: bytes, caption: str, shown: bool = True) -> str:
    """A PNG embedded in the page; its caption shown below it, or only as its alt text."""
    encoded = base64.b64encode(picture).decode()
    below = f"<figcaption>{text(caption)}</figcaption>" if shown else ""
    return f'<figure><img alt="{text(caption)}" src="data:image/png;base64,{encoded}">{below}</figure>'


def page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)}</title><style>{STYLE}</style></head>\n<body><main>\n"
        + "\n".join(body)
        + "\n</main></body></html>\n"
    )


def html_table(header: list[str], rows: list[list[str]], numeric_from: int) -> str:
    """A table of already-escaped cells; columns from `numeric_from` on are right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in header)
    lines = [
        "<tr>"
        + "".join(f"<td{' class=num' if i >= numeric_from else ''}>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    ]
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def status_badge(status: str) -> str:
    kind, words = ("ok", "finished") if status == "ok" else ("bad", status)
    return f'<span class="status {kind}">{text(words)}</span>'


def metrics_table(metrics: dict[str, Any]) -> str:
    """The final metrics: a row per measure (loss, acc, ...), a column per split; timings apart."""
    measures: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        split, _, measure = key.partition("/")
        if split in SPLITS and measure:
            measures.setdefault(measure, {})[split] = value
    splits = [s for s in SPLITS if any(s in row for row in measures.values())]
    rows = [[text(m)] + [number(row[s]) if s in row else "" for s in splits] for m, row in measures.items()]
    timings = [[text(k), number(v)] for k, v in metrics.items() if k.startswith("time/")]
    out = html_table(["metric", *splits], rows, 1) if rows else "<p>No final metrics.</p>"
    return out + ("<h2>Timings</h2>" + html_table(["timing", "value"], timings, 1) if timings else "")


def run_curves(folder: Path, scalars: logged.Curves) -> list[str]:
    """A figure per measure (loss, acc, lr, ...) with each split's curve: what TensorBoard shows."""
    from dlbench.figures import curves_figure

    epochs = logged.in_epochs(folder, scalars)
    x, scalars = ("epoch", epochs) if epochs is not None else ("step", scalars)
    measures: dict[str, list[str]] = {}
    for tag in scalars:
        split, _, measure = tag.partition("/")
        if split in ("train", "val") and measure:
            measures.setdefault(measure.removesuffix("_step"), []).append(tag)
    figures = []
    for measure, tags in sorted(measures.items(), key=lambda m: m[0] != "loss"):
        curves = [(tag, *scalars[tag]) for tag in tags]
        figures.append(image(png(curves_figure(curves, measure, x, measure)), measure, shown=False))
    return figures


def pictures_grid(pictures: dict[str, tuple[int, bytes]]) -> list[str]:
    """The last picture of each figure a run logged (logged.read), captioned with its step."""
    if not pictures:
        return []
    shown = [image(picture, f"{tag} (step {step})") for tag, (step, picture) in pictures.items()]
    return ['<div class="grid">', *shown, "</div>"]


def config_section(folder: Path) -> list[str]:
    path = folder / ".hydra" / "config.yaml"
    if not files.plain_file(path) or path.stat().st_size > (1 << 20):
        return []
    config = path.read_text(errors="replace")
    return [
        "<details><summary>The composed config (.hydra/config.yaml)</summary>",
        f"<pre>{text(config)}</pre></details>",
    ]


def run_report(folder: Path) -> str:
    """The page of one run folder."""
    row = summary.job_row(folder)  # (its metrics: metrics.json's, all named split/measure)
    scalars, pictures = logged.read(folder)
    name = "/".join(folder.absolute().parts[-2:])  # (outputs/<preset>/<time>: the preset and time)
    body = [
        f"<h1>{text(name)} {status_badge(row['status'])}</h1>",
        f'<div class="path">{text(folder)}</div>',
        f"<p>Overrides: <code>{text(row['overrides'] or '(none)')}</code></p>",
        "<h2>Final metrics</h2>",
        metrics_table({k: v for k, v in row.items() if "/" in k}),
    ]
    if curves := run_curves(folder, scalars):
        body += ["<h2>Curves</h2>", '<div class="grid">', *curves, "</div>"]
    if grid := pictures_grid(pictures):
        body += ["<h2>Pictures</h2>", *grid]
    body += ["<h2>Config</h2>", *config_section(folder)]
    return page(f"dlbench report: {name}", body)


def sweep_report(title: str, folders: list[tuple[str, Path]]) -> str:
    """The page of a sweep's jobs (or of several runs): their table (best first), each
    measure's curves overlaid, and the best job's pictures and config."""
    from dlbench.figures import curves_figure

    rows = summary.rows_of(folders)
    shared, labels = summary.varying_overrides(rows)
    columns = [c for c in summary.metric_columns(rows) if not c.startswith("time/")]
    key = next((c for c in summary.HEADLINE if c in columns), columns[0] if columns else None)
    order = summary.sort_rows(rows, key) if key else rows
    label_of = {id(r): label for r, label in zip(rows, labels, strict=True)}
    table = html_table(
        ["job", "overrides", "status", *map(text, columns)],
        [
            [text(r["job"]), text(label_of[id(r)]), status_badge(r["status"])]
            + [number(r.get(c, "")) for c in columns]
            for r in order
        ],
        3,
    )
    read = {name: logged.read(folder) for name, folder in folders}  # (curves and pictures: read once)
    scalars = {name: curves for name, (curves, _) in read.items()}
    x = "epoch" if any("time/epoch_s" in s for s in scalars.values()) else "step"
    if x == "epoch":
        scalars = {name: logged.in_epochs(folder, scalars[name]) or scalars[name] for name, folder in folders}
    tags = sorted(
        {
            t
            for s in scalars.values()
            for t in s
            if t.split("/")[0] in ("train", "val") and not t.endswith("_step")
        }
    )
    figures = []
    for tag in sorted(tags, key=lambda t: ("loss" not in t, t)):
        curves = [
            (label or name, *scalars[name][tag])
            for (name, folder), label in zip(folders, labels, strict=True)
            if tag in scalars[name]
        ]
        figures.append(image(png(curves_figure(curves, tag, x, tag)), tag, shown=False))
    body = [
        f"<h1>{text(title)}: {counted(len(rows), 'job')}</h1>",
        f'<div class="path">{text(", ".join(sorted({str(folder.parent) for _, folder in folders})))}</div>',
        f"<p>Every job: <code>{text(' '.join(shared) or '(nothing shared)')}</code></p>",
        f"<h2>Jobs{text(f', best {key} first') if key else ''}</h2>",
        table,
    ]
    if figures:
        body += ["<h2>Curves</h2>", '<div class="grid">', *figures, "</div>"]
    best = next((f for (n, f) in folders if order and n == order[0]["job"]), None)
    if best is not None and order[0]["status"] == "ok":
        heading = f"Best job: {order[0]['job']} ({label_of[id(order[0])] or 'no own overrides'})"
        body += [f"<h2>{text(heading)}</h2>", *pictures_grid(read[order[0]["job"]][1]), *config_section(best)]
    return page(f"dlbench report: {title}", body)
