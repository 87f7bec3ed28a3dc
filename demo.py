"""The built-in procedural demo data, so that `python train.py` runs out of the box with nothing to
download: comic-like panels for colorization and face-like portraits for inpainting, drawn on the fly
from a seed (nothing is stored).

draw_panel: a Golden-Age-comic-like panel (flat colours, black ink outlines, halftone dots). Colour
    follows from shape and position, so it can be learned from the gray image: sky is blue and above the
    horizon, grass is green (dotted), ploughed fields are brown (furrow lines), suns are yellow-orange
    discs with rays, tree crowns are green triangles, houses are red with a dark roof, figures have skin
    heads and pink bodies, clouds and speech bubbles are white. Only lightness and saturation vary, hue
    stays fixed per kind.
draw_face: an aligned-portrait-like face (as in CelebA: eyes at ~40% height, mouth at ~70%), with varied
    background, skin, hair, eyes and mouth, so that the central square the inpainting network must fill
    holds eyes, nose and mouth.

Both are deterministic functions of (seed, size); they draw supersampled, then downsample with LANCZOS
for anti-aliased edges. As a script, it writes held-out drawings as files, the inputs with which to
try a demo model in generate.py:

    python demo.py --task colorize --out demo_panels --count 8
"""
import argparse
import colorsys
import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

import tasks
from classes import ImageDataset

DEMO_TRAIN_ID, DEMO_VAL_ID, DEMO_TEST_ID = 0, 10**7, 2 * 10**7  # image ids: the three splits never meet


class DemoDataset(ImageDataset):
    """The built-in procedural data: image i is drawn from (seed, i) on the fly, nothing is stored."""

    def __init__(self, draw, size, count, first_id, transform):
        super().__init__([], transform)
        self.files = range(count)  # image ids, drawn by load()
        self.draw, self.size, self.first_id = draw, size, first_id

    def name(self, index):
        return f"demo-{self.first_id + index}"

    def load(self, index):
        return self.draw(self.first_id + index, self.size)


_SS_PIXELS = 512           # supersample up to this many pixels per side (cost bound)
_SS_MAX = 4                # ... but never more than 4x
_INK = (20, 18, 24)        # near-black printing ink
_INK_FRAC = 1 / 45         # outline width relative to the panel side (~1.5 px at 64)
_DOT_PITCH_FRAC = 1 / 18   # halftone grid spacing relative to the panel side
_DOT_RADIUS = 0.3          # dot radius relative to the pitch
_HORIZON = (0.45, 0.75)    # horizon height range, as a fraction of the side

# Hue (0..1) per kind, with (saturation range, value range): hue never changes, so it is
# predictable from the shape; value/saturation vary so gray levels are no lookup table.
_KINDS = {
    "sky": (0.58, (0.35, 0.65), (0.75, 1.0)),
    "grass": (0.30, (0.45, 0.75), (0.45, 0.8)),
    "field": (0.08, (0.5, 0.75), (0.35, 0.6)),
    "sun": (0.13, (0.7, 0.95), (0.9, 1.0)),
    "crown": (0.36, (0.55, 0.8), (0.3, 0.6)),
    "trunk": (0.07, (0.5, 0.7), (0.25, 0.4)),
    "wall": (0.0, (0.6, 0.85), (0.6, 0.9)),
    "roof": (0.0, (0.4, 0.6), (0.2, 0.35)),
    "window": (0.15, (0.2, 0.4), (0.95, 1.0)),
    "skin": (0.07, (0.25, 0.4), (0.9, 1.0)),
    "body": (0.93, (0.35, 0.6), (0.75, 0.95)),
    "white": (0.0, (0.0, 0.04), (0.94, 1.0)),
}
_SKIN_LIGHT, _SKIN_DARK = np.array([250, 222, 196]), np.array([105, 66, 42])
_HAIR = [(25, 20, 18), (70, 45, 25), (120, 80, 40), (200, 160, 90), (150, 60, 25), (150, 150, 150)]
_IRIS = [(60, 40, 25), (100, 70, 35), (60, 110, 160), (70, 110, 70), (30, 25, 25)]
_LIP = np.array([190, 60, 70])


def _supersample(size):
    return max(1, min(_SS_MAX, _SS_PIXELS // size))


def _colour(rng, kind):
    hue, sat, val = _KINDS[kind]
    r, g, b = colorsys.hsv_to_rgb((hue + rng.normal(0, 0.01)) % 1.0, rng.uniform(*sat), rng.uniform(*val))
    return int(r * 255), int(g * 255), int(b * 255)


def _shade(rgb, factor):
    return tuple(int(min(255, c * factor)) for c in rgb)


@functools.lru_cache(maxsize=16)
def _dot_mask(width, pitch):
    """Staggered grid of round dots (255 on a dot), like offset-printed Ben-Day dots."""
    y, x = np.mgrid[0:width, 0:width].astype(np.float32)
    x += (y // pitch % 2) * pitch / 2
    dy, dx = y % pitch - pitch / 2, x % pitch - pitch / 2
    return Image.fromarray(((dx * dx + dy * dy) < (_DOT_RADIUS * pitch) ** 2).astype(np.uint8) * 255)


class _Inker:
    """Draws flat-filled, ink-outlined shapes, optionally with halftone dots."""

    def __init__(self, img, rng, ink_width, pitch):
        self.img, self.rng, self.ink, self.pitch = img, rng, ink_width, pitch
        self.draw = ImageDraw.Draw(img)

    def shape(self, method, xy, kind, dots=0.0, outline=True):
        colour = _colour(self.rng, kind)
        width = self.ink if outline else 0
        getattr(self.draw, method)(xy, fill=colour, outline=_INK if outline else None, width=width)
        if self.rng.random() < dots:
            mask = Image.new("L", self.img.size, 0)
            getattr(ImageDraw.Draw(mask), method)(xy, fill=255)
            mask = ImageChops.multiply(mask, _dot_mask(self.img.width, self.pitch))
            self.img.paste(_shade(colour, self.rng.choice([0.8, 1.2])), mask=mask)
            if outline:  # dots were printed over the outline: ink it again
                getattr(self.draw, method)(xy, outline=_INK, width=width)
        return colour


def _tree(ink, bx, by, k):
    ink.shape("rectangle", [bx - 0.06 * k, by - 0.3 * k, bx + 0.06 * k, by], "trunk")
    ink.shape("polygon", [(bx - 0.3 * k, by - 0.25 * k), (bx + 0.3 * k, by - 0.25 * k), (bx, by - k)], "crown", dots=0.6)


def _house(ink, bx, by, k):
    w, h = 0.45 * k, 0.5 * k
    ink.shape("rectangle", [bx - w, by - h, bx + w, by], "wall", dots=0.4)
    ink.shape("polygon", [(bx - 1.2 * w, by - h), (bx + 1.2 * w, by - h), (bx, by - 0.85 * k)], "roof")
    ink.shape("rectangle", [bx - 0.7 * w, by - 0.75 * h, bx - 0.25 * w, by - 0.4 * h], "window")
    ink.shape("rectangle", [bx + 0.15 * w, by - 0.6 * h, bx + 0.55 * w, by], "trunk")


def _figure(ink, bx, by, k):
    ink.shape("ellipse", [bx - 0.16 * k, by - 0.6 * k, bx + 0.16 * k, by], "body", dots=0.5)
    ink.shape("ellipse", [bx - 0.12 * k, by - 0.85 * k, bx + 0.12 * k, by - 0.58 * k], "skin")


def _cloud(ink, cx, cy, r, rng):
    puffs = [(cx + dx * r, cy + dy * r, r * s) for dx, dy, s in
             [(0, 0, 1), (-0.9, 0.25, 0.7), (0.9, 0.25, 0.7), (rng.uniform(-0.5, 0.5), -0.4, 0.7)]]
    for grow, colour in [(ink.ink, _INK), (0, _colour(rng, "white"))]:  # ink the union, then fill it
        for x, y, pr in puffs:
            ink.draw.ellipse([x - pr - grow, y - pr - grow, x + pr + grow, y + pr + grow], fill=colour)


def _sun(ink, cx, cy, r, rng):
    for angle in np.linspace(0, 2 * np.pi, rng.integers(8, 13), endpoint=False) + rng.uniform(0, 1):
        c, s = np.cos(angle), np.sin(angle)
        ink.draw.line([(cx + 1.25 * r * c, cy + 1.25 * r * s), (cx + 1.6 * r * c, cy + 1.6 * r * s)], fill=_INK, width=ink.ink)
    ink.shape("ellipse", [cx - r, cy - r, cx + r, cy + r], "sun", dots=0.3)


def _bubble(ink, cx, cy, rx, rng):
    ry, tx = 0.55 * rx, cx + rng.uniform(-0.8, 0.8) * rx
    box = [cx - rx, cy - ry, cx + rx, cy + ry]
    ink.shape("ellipse", box, "white")
    ink.draw.polygon([(cx - 0.25 * rx, cy), (cx + 0.05 * rx, cy), (tx, cy + 1.6 * ry)], fill=(255, 255, 255), outline=_INK, width=ink.ink)
    ink.draw.ellipse([box[0] + ink.ink, box[1] + ink.ink, box[2] - ink.ink, box[3] - ink.ink], fill=(255, 255, 255))
    for i in range(rng.integers(2, 4)):  # scribbled lettering
        y, half = cy + (i - 0.8) * 0.35 * ry, rx * rng.uniform(0.35, 0.6)
        ink.draw.line([(cx - half, y), (cx + half, y)], fill=_INK, width=max(1, ink.ink // 2))


def draw_panel(seed: int, size: int) -> Image.Image:
    """A comic panel: sky over grass/field at a random horizon, 3-6 objects, ink + dots."""
    rng = np.random.default_rng(seed)
    w = size * _supersample(size)
    img = Image.new("RGB", (w, w))
    ink = _Inker(img, rng, max(1, round(w * _INK_FRAC)), max(3, round(w * _DOT_PITCH_FRAC)))
    horizon = rng.uniform(*_HORIZON) * w

    ink.shape("rectangle", [0, 0, w, horizon], "sky", dots=0.3, outline=False)
    n_objects = rng.integers(3, 7)
    sky_kinds = ["sun"] * (rng.random() < 0.6) + ["cloud"] * rng.integers(0, 3)
    ground_kinds = rng.choice(["tree", "house", "figure"], max(1, n_objects - len(sky_kinds)))
    for kind in sky_kinds:
        r = rng.uniform(0.06, 0.11) * w
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1 * w + r, horizon)
        (_sun if kind == "sun" else _cloud)(ink, cx, cy, r, rng)

    if rng.random() < 0.6:
        ink.shape("rectangle", [0, horizon, w, w], "grass", dots=0.7, outline=False)
    else:  # ploughed field: furrows get denser towards the horizon (perspective)
        colour = ink.shape("rectangle", [0, horizon, w, w], "field", outline=False)
        for t in np.linspace(0, 1, 8) ** 2:
            y = horizon + t * (w - horizon)
            ink.draw.line([(0, y), (w, y)], fill=_shade(colour, 0.6), width=ink.ink)
    ink.draw.line([(0, horizon), (w, horizon)], fill=_INK, width=ink.ink)

    # Ground objects stand on a base line; nearer (lower) ones are larger and drawn later.
    bases = sorted(rng.uniform(horizon + 0.05 * w, 0.97 * w, len(ground_kinds)))
    for kind, by in zip(ground_kinds, bases):
        k = w * (0.25 + 0.35 * (by - horizon) / (w - horizon)) * rng.uniform(0.85, 1.15)
        {"tree": _tree, "house": _house, "figure": _figure}[kind](ink, rng.uniform(0.1, 0.9) * w, by, k)

    if rng.random() < 0.3:
        _bubble(ink, rng.uniform(0.3, 0.7) * w, rng.uniform(0.12, 0.25) * w, rng.uniform(0.2, 0.28) * w, rng)
    if rng.random() < 0.7:
        ink.draw.rectangle([0, 0, w - 1, w - 1], outline=_INK, width=2 * ink.ink)
    return img.resize((size, size), Image.LANCZOS)


def draw_face(seed: int, size: int) -> Image.Image:
    """An aligned portrait: eyes ~40% down, mouth ~70%, all inside the central square."""
    rng = np.random.default_rng(seed)
    w = size * _supersample(size)

    def px(*coords):  # layout is in fractions of the side, so any size gives the same face
        return [c * w for c in coords]

    def jit(rgb, amount=20):
        return tuple(int(c) for c in np.clip(np.asarray(rgb) + rng.normal(0, amount, 3), 0, 255))

    # Muted backdrop colours, as photo backgrounds are mostly out of focus and dull.
    top_colour, bottom_colour = 0.5 * rng.integers(0, 256, (2, 3)) + 0.5 * rng.integers(60, 200)
    gradient = Image.linear_gradient("L").resize((w, w))
    img = Image.composite(Image.new("RGB", (w, w), jit(bottom_colour, 0)), Image.new("RGB", (w, w), jit(top_colour, 0)), gradient)
    d = ImageDraw.Draw(img)

    skin = jit(_SKIN_LIGHT + rng.uniform() * (_SKIN_DARK - _SKIN_LIGHT), 4)  # small: keep it skin-hued
    shadow = _shade(skin, 0.8)
    hair = jit(_HAIR[rng.integers(len(_HAIR))], 12)
    cx, fw = 0.5 + rng.normal(0, 0.015), rng.uniform(0.25, 0.31)   # face centre, half width
    top, chin = rng.uniform(0.14, 0.2), rng.uniform(0.86, 0.93)
    eye_y, mouth_y = 0.41 + rng.normal(0, 0.012), 0.71 + rng.normal(0, 0.012)

    if rng.random() < 0.5:  # long hair falls behind the shoulders
        d.rectangle(px(cx - fw - 0.06, 0.35, cx + fw + 0.06, 1.0), fill=hair)
    d.ellipse(px(cx - 0.48, 0.9, cx + 0.48, 1.4), fill=jit(rng.integers(0, 256, 3), 0))  # shoulders
    d.rectangle(px(cx - 0.11, 0.7, cx + 0.11, 0.95), fill=shadow)                     # neck
    d.ellipse(px(cx - fw - 0.05, top - 0.07, cx + fw + 0.05, eye_y + 0.1), fill=hair)  # hair cap
    for side in (-1, 1):                                                                 # ears
        d.ellipse(px(cx + side * fw - 0.035, eye_y - 0.01, cx + side * fw + 0.035, eye_y + 0.13), fill=shadow)
    d.ellipse(px(cx - fw, top, cx + fw, chin), fill=skin)
    fringe = rng.uniform(0.07, 0.14)
    d.chord(px(cx - fw, top - 0.03, cx + fw, top + 2 * fringe), 180, 360, fill=hair)

    spacing, gaze = rng.uniform(0.11, 0.14), rng.normal(0, 0.006)
    eye_w, eye_h, iris_r = rng.uniform(0.045, 0.06), rng.uniform(0.022, 0.03), rng.uniform(0.018, 0.024)
    iris, brow = jit(_IRIS[rng.integers(len(_IRIS))], 10), _shade(hair, 0.7)
    brow_y, brow_tilt = eye_y - rng.uniform(0.05, 0.07), rng.normal(0, 0.008)
    for side in (-1, 1):  # mirror-symmetric eyes and brows
        ex = cx + side * spacing
        d.ellipse(px(ex - eye_w, eye_y - eye_h, ex + eye_w, eye_y + eye_h), fill=(245, 245, 240))
        d.ellipse(px(ex + gaze - iris_r, eye_y - iris_r, ex + gaze + iris_r, eye_y + iris_r), fill=iris)
        d.ellipse(px(ex + gaze - iris_r / 2, eye_y - iris_r / 2, ex + gaze + iris_r / 2, eye_y + iris_r / 2), fill=(10, 10, 10))
        d.arc(px(ex - eye_w, eye_y - eye_h, ex + eye_w, eye_y + eye_h), 180, 360, fill=(40, 30, 30), width=max(1, int(0.008 * w)))
        d.line(px(ex - side * 0.05, brow_y + brow_tilt, ex + side * 0.06, brow_y - brow_tilt), fill=brow, width=max(1, int(0.016 * w)))

    nose_y, nose_w = rng.uniform(0.57, 0.61), rng.uniform(0.025, 0.04)
    d.line(px(cx + 0.01, eye_y + 0.05, cx + 0.015, nose_y), fill=shadow, width=max(1, int(0.01 * w)))
    d.chord(px(cx - nose_w, nose_y - 0.025, cx + nose_w, nose_y + 0.02), 0, 180, fill=_shade(skin, 0.7))

    mouth_w, mouth_h = rng.uniform(0.07, 0.1), rng.uniform(0.018, 0.035)
    lips = jit(np.asarray(skin) * 0.4 + _LIP * 0.6, 10)
    d.ellipse(px(cx - mouth_w, mouth_y - mouth_h, cx + mouth_w, mouth_y + mouth_h), fill=lips)
    smile = rng.uniform(0, 0.02)  # the lip line bends up at the corners when smiling
    d.arc(px(cx - mouth_w, mouth_y - mouth_h - smile, cx + mouth_w, mouth_y + smile), 0, 180 if smile > 0.005 else 0,
          fill=_shade(lips, 0.5), width=max(1, int(0.008 * w)))
    return img.resize((size, size), Image.LANCZOS)


# ----------------------------------------------------------------------------------------------------
# Held-out drawings as files, to try a demo model with generate.py: drawn from the test split's seeds
# (DEMO_TEST_ID on), which training never draws.

def held_out(task, index, size):
    """A task's held-out drawing `index` -> (file name, the input as a user would give it to generate.py,
    the true image)."""
    seed = DEMO_TEST_ID + index
    drawing = task.draw(seed, size)
    return f"{task.demo_name}-{seed}.png", task.demo_input(drawing), drawing


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def get_parser():
    p = argparse.ArgumentParser(formatter_class=argparse.RawDescriptionHelpFormatter, description="""\
Write held-out drawings of the built-in demo as PNG files: inputs for generate.py, to try a demo model
(python train.py) on images it never saw in training.

    python demo.py --task colorize --out demo_panels --count 8 --reference demo_truth   # + their colours
    python demo.py --task inpaint --out demo_faces

colorize writes gray panels; inpaint writes faces whose center is covered by a white square, which
generate.py finds (--mask auto). The drawings come from the demo's test split, which training never
draws, and the same command always writes the same files. No file is overwritten: a file of the same
name must already hold the same drawing, else nothing is written.""")
    default = next(iter(tasks.TASKS))
    p.add_argument("--task", choices=list(tasks.TASKS), default=default, help="what to draw: " + ", ".join(
        f"{task.demo_name}s to {task.name}" for task in tasks.TASKS.values()) + f" (default: {default})")
    p.add_argument("--out", type=Path, required=True, help="folder for the drawings (made if missing)")
    p.add_argument("--count", type=int, default=8, help="how many drawings (default: 8)")
    p.add_argument("--size", type=int, default=256, help="side of each drawing in pixels; generate.py takes any "
                   "size, the demo models were trained at 64 (default: 256)")
    p.add_argument("--reference", type=Path, help="also write each drawing's true image into this folder, for "
                   "generate.py --reference (scores on the results page)")
    return p


def main(args):
    if args.count < 1 or args.size < 1:
        raise SystemExit("error: --count and --size must be 1 or more")
    if args.reference and args.reference.resolve() == args.out.resolve():
        raise SystemExit("error: --reference must be another folder than --out: the files have the same names")
    for folder in filter(None, (args.out, args.reference)):
        if folder.exists() and not folder.is_dir():
            raise SystemExit(f"error: {folder} is not a folder")
    files = {}
    for index in range(args.count):
        name, x, y = held_out(tasks.TASKS[args.task], index, args.size)
        files[args.out / name] = png_bytes(x)
        if args.reference:
            files[args.reference / name] = png_bytes(y)
    try:
        for path, data in files.items():  # a file already there must be this very drawing: a rerun
            if (path.is_symlink() or path.exists()) and not (path.is_file() and path.read_bytes() == data):
                raise SystemExit(f"error: {path} is already there and is not this drawing: nothing was written; "
                                 f"choose another folder")
        new = [path for path in files if not path.exists()]
        for path in new:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "xb") as f:  # "x": never over a file that appeared meanwhile
                f.write(files[path])
    except OSError as e:
        raise SystemExit(f"error: {e.filename}: {e.strerror}")
    print(f"{args.count} held-out {tasks.TASKS[args.task].demo_name}s to {args.task} in {args.out}"
          + (f", their true images in {args.reference}" if args.reference else "")
          + ("" if len(new) == len(files) else f" ({len(files) - len(new)} of the files were there already)"))
    print(f"next: python generate.py --checkpoint runs/{args.task}-demo/best.pt --input {args.out} --output OUTPUT"
          + (f" --reference {args.reference}" if args.reference else ""))


if __name__ == "__main__":
    main(get_parser().parse_args())
