"""What a task is: the members that train.py, generate.py, the pages and the benchmarks ask of one.

A task is one file (colorize.py, inpaint.py) whose class subclasses Task, sets its attributes and writes
every method marked abstract below; the others have a default that a task overrides only where it
differs. tasks.py lists the tasks. `cfg`, wherever a member receives it, is the run's configuration as
an argparse.Namespace: train.py's flags resolved against the task's presets, or a checkpoint's settings.
In generate.py, `run` is the generate.py run: its flags, G, its size and the checkpoint's cfg.
"""
import abc
import argparse
import dataclasses

import torch


@dataclasses.dataclass
class XY:
    """A batch as the networks see it, on the device: G learns to map x to y."""
    x: torch.Tensor  # the condition that G sees, (B, C_in, S, S)
    y: torch.Tensor  # the target that G predicts
    weight: torch.Tensor | None  # the reconstruction loss's weight over y; None: the plain mean
    hole: torch.Tensor | None  # (B, 1, S, S), 1 where the image shown is G's output; None: everywhere


def flag_dest(flag):
    """The attribute that argparse gives a flag: --ab-upsample -> ab_upsample."""
    return flag.lstrip("-").replace("-", "_")


class Task(abc.ABC):
    """The contract of a task. Attributes:
    name: --task, and "task" in a checkpoint's configuration; title: the heading of its flags in --help;
    dataset: the raw --data layout it reads (classes.find_splits); paper: the settings of the paper and
    its official code (train.py --paper); departures: where the defaults differ from them, each measured
    on real drawings (docs/defaults.md), so the defaults with --data are paper + departures;
    demo_departures: the demo's own, chosen on its drawings; demo_preset: the defaults on the procedural
    demo (without --data), paper + both departures at the demo's sizes; demo_name: what the demo draws, in one word
    (demo.py's file names); score: the validation metric that best.pt maximizes; baseline: the score of
    no network shown beside it."""

    name: str
    title: str
    dataset: str
    paper: dict
    departures: dict = {}
    demo_departures: dict = {}
    demo_preset: dict
    demo_name: str
    score: str
    baseline: str

    # --- flags and presets

    def train_flags(self):
        """The task's own train.py flags -> {"--flag": add_argument's keywords}."""
        return {}

    def train_notes(self):
        """What --help says of the task under its train.py flags: its rules for the shared ones."""
        return f"With --task {self.name}."

    def generate_flags(self):
        """The task's own generate.py flags, which change its outputs -> {"--flag": add_argument's keywords}."""
        return {}

    def add_train_flags(self, parser):
        """Add train_flags to train.py's parser, as a group: every task's are there, since the parser is
        built before the task is known."""
        add_group(parser, self.title, self.train_notes(), self.train_flags())

    def add_generate_flags(self, parser):
        """Add generate_flags to generate.py's parser, as a group."""
        add_group(parser, self.title, f"With a checkpoint of --task {self.name}.", self.generate_flags())

    def generate_settings(self, args):
        """generate.py's args -> {setting: value} of the task's generate.py flags, as the record of the
        outputs holds them (another value, other outputs)."""
        return {flag_dest(flag): getattr(args, flag_dest(flag)) for flag in self.generate_flags()}

    def preset(self, train_images, paper=False):
        """The defaults of a run on `train_images` training images (None: the procedural demo); with
        `paper` (train.py --paper), every departure reverted to the paper's setting -> dict."""
        preset = self.demo_preset if train_images is None else {**self.paper, **self.departures}
        return {**preset, **{k: self.paper[k] for k in {**self.departures, **self.demo_departures}}} if paper else preset

    def presets(self):
        """{label: preset} for --help: the defaults with --data first (label ""), then the others."""
        return {"": {**self.paper, **self.departures}, "--paper": self.paper, "demo": self.demo_preset}

    def preset_help(self, key):
        """What the presets set `key` to, for --help: '1 (200k+ images 4, demo 4)', or "" for none.
        Settings that follow from others (defaults) are shown as they follow from each preset."""
        values = {}
        for label, preset in self.presets().items():
            cfg = argparse.Namespace(**{"norm": "batch", "norm_stats": "auto", **preset})
            for k, v in self.defaults(cfg).items():
                if getattr(cfg, k, None) in (None, "auto"):
                    setattr(cfg, k, v)
            value = getattr(cfg, key, None)
            values[label] = f"{value:g}" if isinstance(value, float) else value
        others = [f"{label} {v}" for label, v in values.items() if label and v != values[""] and v is not None]
        first = "" if values[""] is None else str(values[""])
        return " ".join(filter(None, [first, f"({', '.join(others)})" if others else ""]))

    @abc.abstractmethod
    def defaults(self, cfg):
        """cfg -> {setting: value} of the settings that follow from the others (applied where unset)."""

    def problems(self, cfg):
        """cfg -> [one line for each setting this task refuses]."""
        return []

    def smallest_batch(self, cfg):
        """cfg -> the smallest --batch-size that G can train at."""
        return 1

    def norm_stats_modes(self, cfg):
        """cfg -> the test-time BatchNorm modes that G can run in (model.test_time)."""
        return ("image", "running")

    # --- the networks

    def generator_options(self, cfg):
        """A run's configuration (a dict, maybe of a run older than the task's options) -> the task's own
        settings that shape G, as keywords of channels (tasks.generator_for)."""
        return {}

    @abc.abstractmethod
    def channels(self, netG, **options):
        """--netG and the generator_options -> (channels of x, channels of y). D is built for the pairs of
        an x without the options (d_input): what widens G's input is not shown to D."""

    @abc.abstractmethod
    def d_input(self, x, image, cfg):
        """x and an image (y, or G's output) -> what D judges."""

    # --- the data

    @abc.abstractmethod
    def transforms(self, cfg):
        """cfg -> (training transform, validation transform): (PIL image, numpy rng) -> a tuple of tensors."""

    @abc.abstractmethod
    def draw(self, seed, size):
        """The procedural demo's image number `seed`, size x size -> PIL RGB image (demo.py)."""

    @abc.abstractmethod
    def demo_side(self, cfg):
        """cfg -> the side at which the demo's images are drawn, before the transforms."""

    def demo_input(self, drawing):
        """A drawing of the demo (draw) -> the image that a user would give generate.py for it (demo.py)."""
        return drawing

    @abc.abstractmethod
    def batch_to_xy(self, batch, cfg, device):
        """A batch from the loader (the transforms' tensors, then the indices) -> XY on the device."""

    # --- what is shown and scored

    @abc.abstractmethod
    def pictures(self, xy, fake, cfg):
        """XY and G's output -> (input, output, target) as RGB images in [0, 1], (B, 3, S, S) each."""

    def sample_columns(self, cfg):
        """The columns of the run's sample grids (score.save_samples): an [input | output] pair for each of
        test_inputs, then the target."""
        return "input | output | target"

    def test_inputs(self, xy, cfg):
        """A validation or test batch's XY -> {column prefix: XY}: the inputs that G is scored on. "" is the
        batch's own, scored in full; another prefix's columns are the scores of G's output alone (no
        baseline_ or reference_ ones, which do not depend on G's input)."""
        return {"": xy}

    @abc.abstractmethod
    def scores(self, inp, out, target, hole=None):
        """pictures' (input, output, target) and the hole (XY.hole) -> {metric: (B,) tensor}, the
        baselines' as baseline_<name>_<metric>, those of the target alone as reference_<metric>."""

    @abc.abstractmethod
    def score_image(self, out, reference, hole):
        """generate.py --reference: a full-size output and its reference, (1, 3, H, W) in [0, 1], and the
        (H, W) bool hole of output_hole -> {metric: (1,) tensor}."""

    # --- generate.py: any image at full resolution

    def setup_generation(self, run):
        """Check generate.py's settings against the checkpoint, and read what they name; exits with one line."""

    def side_files(self, src, run):
        """The input image `src` -> {what: its file or None} of the files beside it that make its output too
        (colorize: its hint image). generate.py counts the inputs that have each, and an output records a
        digest of their bytes: a rerun makes it again when they change."""
        return {}

    def network_input_shape(self, run):
        """-> the network input's shape, for the log."""
        return f"{run.size}x{run.size}"

    @abc.abstractmethod
    def image_to_input(self, src, run):
        """An image file -> its item: {"x": the network input (C, h, w)} and what finish_image needs."""

    @abc.abstractmethod
    def finish_image(self, item, fake, page, run):
        """The item, G's output for it and the decoded image -> (input band, output band) pairs, uint8,
        a band of rows of the page at a time (images.bands)."""

    def output_hole(self, item, size, run):
        """The (H, W) bool pixels of the output that G made, for --reference; None: all of them."""
        return None


def add_group(parser, title, description, flags):
    """A group of flags {"--flag": add_argument's keywords} in parser."""
    group = parser.add_argument_group(title, description)
    for flag, keywords in flags.items():
        group.add_argument(flag, **keywords)
