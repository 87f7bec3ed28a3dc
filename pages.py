"""The pages a person looks at: a run folder's index.html (train.py) and an output folder's index.html
(generate.py). Each is one self-contained HTML file that opens from disk in any browser: no server,
nothing fetched from the network, every picture a file beside it, linked by a relative path.
"""
import hashlib
import html
import json
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

import images
import utils

STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}
h2{font-size:1.15em;margin-top:1.6em}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;vertical-align:top}th{background:#f3f3f3}
td.l,th.l{text-align:left}img{image-rendering:pixelated;max-width:100%}figure{display:inline-block;margin:0 1em 1em 0}
figcaption{font-size:12px;color:#555}.scroll{max-height:32em;overflow:auto;display:inline-block}
figure.small img{width:160px}"""
THUMB_SIDE = 192  # px: the longest side of a thumbnail on generate.py's page
THUMB_QUALITY = 85  # JPEG


def link(target, folder):
    """A relative URL from `folder` to `target` (a file anywhere on this disk)."""
    return quote(os.fsencode(Path(os.path.relpath(target, folder)).as_posix()))  # a file name's own bytes


def table(rows, columns=None, digits=4):
    """An HTML table of dicts, numbers rounded to `digits` significant digits."""
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))

    def cell(value):  # whole numbers (steps, seconds, image counts) in full, the rest rounded
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f'<td class="l">{html.escape(str(value))}</td>'
        return f"<td>{int(number):,}</td>" if number.is_integer() and abs(number) < 1e15 else f"<td>{number:.{digits}g}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(row.get(c, "")) for c in columns) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def write_page(path, title, body):
    utils.write_text(path, f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                           f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


# ----------------------------------------------------------------------------------------------------
# train.py's run folder


def run_page(out, cfg, rows, status, test_scores=None, columns="input | output | target"):
    """OUT/index.html: the status, the curves, the newest sample grid (whose `columns` are named) and the
    earlier ones newest first, the metrics table (newest first), the test scores at the end, the
    configuration (cfg, the run's Namespace)."""
    out = Path(out)
    body = [f"<p>{html.escape(status)}</p>"]
    if test_scores:
        body.append("<h2>Test split</h2>" + table([test_scores]))
    if (out / "plot.png").exists():
        body.append('<h2>Curves</h2><img src="plot.png" alt="losses and validation scores">')
    samples = sorted((out / "samples").glob("step_*.png"), reverse=True)
    if samples:  # the newest at full size, the earlier ones small: a long run has hundreds
        body.append(f"<h2>Samples: [{html.escape(columns)}] on a fixed validation batch</h2>")
        body += [f'<figure class="{"small" if i else ""}"><a href="samples/{p.name}"><img src="samples/{p.name}" '
                 f'alt="{p.stem}" loading="lazy"></a><figcaption>step {int(p.stem.split("_")[1]):,}</figcaption></figure>'
                 for i, p in enumerate(samples)]
    if rows:
        body.append('<h2>Metrics (<a href="metrics.csv">metrics.csv</a>), newest first</h2>' + table(rows[::-1]))
    body.append('<h2>Configuration (<a href="config.json">config.json</a>)</h2>'
                + table([{"setting": k, "value": json.dumps(v)} for k, v in vars(cfg).items()]))
    write_page(out / "index.html", f"{cfg.task} run {out.name}", "".join(body))


# ----------------------------------------------------------------------------------------------------
# generate.py's output folder: thumbnails made while the outputs are written, a band of rows at a time


def reduction(width, height):
    """The factor k by which a thumbnail shrinks an image: its longest side at most THUMB_SIDE."""
    return max(1, min(-(-max(width, height) // THUMB_SIDE), width, height))


class Thumbnail:
    """A small copy of an image that arrives a band of rows at a time: each block of k x k pixels
    averaged (k: reduction) by Pillow's reduce, band by band, without ever holding the whole image. Bands
    are cut at multiples of k, so the result is save_thumbnail's of the whole image, pixel for pixel."""

    def __init__(self, width, height):
        self.k, self.rows, self.pending = reduction(width, height), [], None

    def add(self, band):
        band = images.as_rgb(band)
        if self.pending is not None and len(self.pending):  # rows left over from the band before
            band = np.concatenate([self.pending, band])
        whole = len(band) // self.k * self.k
        if whole:
            self.rows.append(self._reduce(band[:whole]))
        self.pending = band[whole:]

    def _reduce(self, rows):  # Pillow averages a last, narrower block of columns or rows by itself
        return np.asarray(Image.fromarray(np.ascontiguousarray(rows)).reduce(self.k))

    def save(self, path):
        if self.pending is not None and len(self.pending):
            self.rows.append(self._reduce(self.pending))
        pixels = np.concatenate(self.rows) if self.rows else np.zeros((1, 1, 3), np.uint8)
        save_jpeg(Image.fromarray(pixels), path)


def save_thumbnail(img, path):
    """The thumbnail of a whole image (Thumbnail makes the same of one that comes in bands)."""
    save_jpeg(img.convert("RGB").reduce(reduction(*img.size)), path)


def save_jpeg(img, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    utils.write_atomic(path, lambda f: img.save(f, "JPEG", quality=THUMB_QUALITY))


def thumbnail_path(output_dir, name, kind):
    """Where generate.py keeps the thumbnail of the output `name` (its path in the output folder; kind:
    input, output or reference). The folder is hidden: no input folder can meet it, since the folder walk
    skips hidden folders. A name too long to take the kind after it keeps its start and a hash of the whole."""
    name, ending = Path(name), f".{kind}.jpg"
    thumb = name.name + ending
    if len(os.fsencode(thumb)) > utils.NAME_MAX:
        digest = "-" + hashlib.sha256(os.fsencode(name.name)).hexdigest()[:16]
        thumb = utils.fit_name(name.name, utils.NAME_MAX - len(digest) - len(ending)) + digest + ending
    return Path(output_dir) / ".thumbnails" / name.parent / thumb


def outputs_page(output_dir, entries, score, title):
    """OUTPUT/index.html: each input beside its output (and its reference, with its scores), as
    thumbnails linked to the full-size files; the worst `score` first when there are scores. entries:
    dicts of image (the output's path in OUTPUT as text), name (that path itself), src (the input) and
    scores (or None). Links are the files' own bytes, percent-encoded, whatever their names' encoding."""
    output_dir = Path(output_dir)
    scored = [e for e in entries if e.get("scores")]
    entries = sorted(scored, key=lambda e: e["scores"][score]) + sorted((e for e in entries if not e.get("scores")),
                                                                      key=lambda e: e["image"])
    metrics = [k for k in (scored[0]["scores"] if scored else {}) if k != "image" and not k.startswith("baseline")]
    head = "<th>input</th><th>output</th>" + ("<th>reference</th>" if scored else "") + \
           "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    rows = []
    for e in entries:
        cells = []
        for kind, target in (("input", e["src"]), ("output", output_dir / e["name"]), ("reference", e.get("reference"))):
            if kind == "reference" and not scored:
                continue
            thumb = thumbnail_path(output_dir, e["name"], kind)
            picture = (f'<img src="{link(thumb, output_dir)}" alt="{kind}" loading="lazy">' if thumb.exists()
                       else html.escape(kind))
            cells.append(f'<td class="l"><a href="{link(target, output_dir)}">{picture}</a><br>'
                         f"{html.escape(utils.shown(Path(target).name))}</td>" if target else "<td></td>")
        cells += [f"<td>{e['scores'][m]:.4g}</td>" if e.get("scores") else "<td></td>" for m in metrics]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = f"<p>{len(entries):,} outputs" + (f", the worst {score} first" if scored else "") + \
           ('; scores in <a href="scores.csv">scores.csv</a>' if scored else "") + "</p>"
    write_page(output_dir / "index.html", title, note + f"<table><tr>{head}</tr>{''.join(rows)}</table>")
