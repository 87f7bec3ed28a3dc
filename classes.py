"""Datasets: where the images of COMICS and CelebA are (in their raw layouts or an organized train/val/test
tree), the dataset of image files and its resumable sampler, and the command that reorganizes a raw tree
into an organized, optionally pre-resized, copy. (Each task's transform is in its own file, colorize.py or
inpaint.py; the procedural demo data is in demo.py.)

    python classes.py comics raw_panel_images comics286 --size 286 --workers 16   # split by book, resized
    python classes.py celeba celeba celeba128 --size 128 --train-limit 80000 --val-limit 2000

Layouts and splits: COMICS as distributed by Iyyer et al. 2017 ("The Amazing Mysteries of the Gutter",
arXiv 1611.05118, github.com/miyyer/comics); CelebA as distributed by Liu et al. 2015
(mmlab.ie.cuhk.edu.hk/projects/CelebA.html), in its official, torchvision and Kaggle layouts. The README
says where to get the data.
"""
import csv
import errno
import multiprocessing as mp
import os
import random
import re
import shutil
import sys
from functools import partial
from multiprocessing import Pool
from multiprocessing.dummy import Pool as ThreadPool
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, DistributedSampler, default_collate
from tqdm import tqdm

import images
import utils

# ----------------------------------------------------------------------------------------------------
# Dataset trees: where the images of each split are in the raw COMICS and CelebA layouts (see the
# module docstring) or in an organized train/ val/ test/ tree, and the command line that writes such an
# organized tree (optionally pre-resized) from a raw one.

SPLITS = ("train", "val", "test")

COMICS_DIR = "raw_panel_images"
COMICS_ADS_FILE = "predadpages.txt"
COMICS_PANEL = re.compile(r"(\d+)_(\d+)\.jpe?g", re.IGNORECASE | re.ASCII)  # <page_no>_<panel_no>.jpg
COMICS_BOOK = re.compile(r"\d+", re.ASCII)
COMICS_AD = re.compile(r"(\d+)---(\d+)", re.ASCII)  # <book_id>---<page_no>
COMICS_EXPECTED = f"expected {COMICS_DIR}/<book_id>/<page>_<panel>.jpg, or train/ and val/ folders"

CELEBA_DIR = "img_align_celeba"
CELEBA_IMAGE_DIRS = (  # relative to the folder the user points at, most specific first
    f"{CELEBA_DIR}/{CELEBA_DIR}",  # Kaggle's doubled folder (root = the Kaggle download)
    f"CelebA/Img/{CELEBA_DIR}",  # official (root = the folder holding CelebA/)
    f"Img/{CELEBA_DIR}",  # official (root = CelebA/)
    f"celeba/{CELEBA_DIR}",  # torchvision (root = torchvision's root)
    CELEBA_DIR,  # bare folder, torchvision's celeba/ or Kaggle's outer folder
    ".",  # root is the image folder itself
)
CELEBA_PARTITION = "list_eval_partition"  # .txt (official, torchvision) or .csv (Kaggle)
CELEBA_PARTITION_LEVELS = 3  # how many folders above the images to look for the partition file
CELEBA_CODES = {"0": "train", "1": "val", "2": "test"}
CELEBA_LAST = (("train", 162770), ("val", 182637), ("test", 202599))  # official ranges, by file number
CELEBA_EXPECTED = (f"expected {CELEBA_DIR}/*.jpg (official CelebA/Img/..., torchvision celeba/..., Kaggle "
                   f"{CELEBA_DIR}/{CELEBA_DIR}/ or a bare folder), or train/ and val/ folders")

JPEG_QUALITY = 95
JPEG_SUBSAMPLING = 0  # 4:4:4: colour is the colorization target, keep its full resolution
MAX_CHUNK = 256  # tasks per worker round trip: large enough to amortize IPC, small enough to balance
MAX_PRINTED = 20  # unreadable files printed at the end; all of them go to unreadable.txt
DESTINATION_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}  # a full or read-only OUT stops the run


def _warn(message):
    print(f"warning: {message}", file=sys.stderr)


# COMICS


def _comics_root(raw_root):
    """The folder whose subfolders are the books: raw_root itself, its raw_panel_images/ or the doubled
    raw_panel_images/raw_panel_images/ (at most two levels: a symlink loop cannot hang the search)."""
    root = Path(raw_root)
    for _ in range(2):
        if not (root / COMICS_DIR).is_dir():
            break
        root = root / COMICS_DIR
    return root


def _read_ads(ads_file):
    """{(book_id, page_no)} of the advert pages listed in predadpages.txt."""
    ads = set()
    for number, line in enumerate(Path(ads_file).read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = COMICS_AD.fullmatch(line.strip())
        if not match:
            raise ValueError(f"{ads_file}:{number}: expected '<book_id>---<page_no>', got {line!r}")
        ads.add((int(match[1]), int(match[2])))
    return ads


def _book_panels(folder, book_id, ads):
    """A book's panels sorted by (page, panel) as numbers, advert pages left out."""
    panels = []
    with os.scandir(folder) as entries:
        for entry in entries:
            match = COMICS_PANEL.fullmatch(entry.name)
            # is_file() comes from the directory entry's type on Linux: no stat per file
            if match and entry.is_file() and (book_id, int(match[1])) not in ads:
                panels.append((int(match[1]), int(match[2]), entry.path))
    return [Path(path) for *_, path in sorted(panels)]


def comics_books(raw_root, ads_file=None):
    """{book_id: [panel paths]} of a raw COMICS tree, books and panels in numeric order.

    raw_root may be raw_panel_images/, its parent or the doubled raw_panel_images/raw_panel_images/. Only
    numeric book folders and `<page>_<panel>.jpg` files count; pages listed in ads_file are dropped, and so
    are books left without panels. One os.scandir pass, no stat per file (1.2 million panels).
    """
    root = _comics_root(raw_root)
    ads = _read_ads(ads_file) if ads_file else set()
    books = {}
    if root.is_dir():
        with os.scandir(root) as entries:
            folders = [(int(e.name), e.path) for e in entries if COMICS_BOOK.fullmatch(e.name) and e.is_dir()]
        for book_id, folder in sorted(folders):
            panels = _book_panels(folder, book_id, ads)
            if panels:
                books[book_id] = panels
    if not books:
        raise ValueError(f"no images found under {raw_root}: {COMICS_EXPECTED}")
    return books


def find_ads_file(raw_root):
    """predadpages.txt in raw_root, its parent, the books folder or the folders above it up to the one
    holding the (possibly doubled) raw_panel_images/; None if there is none."""
    raw_root, books = Path(raw_root).absolute(), _comics_root(raw_root).absolute()
    folders = [raw_root, raw_root.parent, books, books.parent]
    while books.name == COMICS_DIR and books.parent.name == COMICS_DIR:
        books = books.parent
        folders.append(books.parent)
    return next((f / COMICS_ADS_FILE for f in folders if (f / COMICS_ADS_FILE).is_file()), None)


def _split_size(n, frac):
    """round(n * frac), but at least 1 of 3 or more books when frac > 0: a split must not come out empty."""
    return max(round(n * frac), int(n >= 3 and frac > 0))


def split_books(book_ids, val_frac=0.1, test_frac=0.1, seed=0):
    """{'train', 'val', 'test': sorted book ids}: a split by book, so that no book's art style leaks
    across splits, drawn by a random.Random(seed) shuffle of the sorted ids (the same for a seed whatever
    the input order). round(n * frac) books each for val and test, at least one each (when its fraction
    is not 0) once there are 3 books or more.

    This is not the COMICS authors' split: they kept the last 500 books (by id) for dev and the last 500
    for test. `--val-frac 0.1267 --test-frac 0.1267` gives the same sizes on the 3,948 books (500 each),
    but a random draw of books, not theirs.
    """
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise ValueError(f"val_frac {val_frac} and test_frac {test_frac} must be in [0, 1) with a sum below 1")
    ids = sorted(book_ids)
    random.Random(seed).shuffle(ids)
    n = len(ids)
    n_val, n_test = _split_size(n, val_frac), _split_size(n, test_frac)
    if n_val + n_test >= n > 0:
        raise ValueError(f"val_frac {val_frac} and test_frac {test_frac} leave none of {n} books for training")
    parts = {"val": ids[:n_val], "test": ids[n_val:n_val + n_test], "train": ids[n_val + n_test:]}
    return {split: sorted(parts[split]) for split in SPLITS}


def comics_splits(raw_root, val_frac=0.1, test_frac=0.1, seed=0, ads_file=None):
    """{'train', 'val', 'test': panel paths} of a raw COMICS tree, split by book (split_books)."""
    books = comics_books(raw_root, ads_file)
    split_ids = split_books(books, val_frac, test_frac, seed)
    return {split: [p for book_id in split_ids[split] for p in books[book_id]] for split in SPLITS}


# CelebA


def _image_files(folder):
    """The image files directly in folder (not below it), sorted; [] if it is not a folder."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if images.is_image_file(e.name) and e.is_file())


def _celeba_images(root):
    """(image folder, its images): the first of CELEBA_IMAGE_DIRS under root that holds images."""
    for relative in CELEBA_IMAGE_DIRS:
        images = _image_files(Path(root) / relative)
        if images:
            return Path(root) / relative, images
    raise ValueError(f"no images found under {root}: {CELEBA_EXPECTED}")


def _find_partition_file(image_dir):
    """list_eval_partition.txt (also in an Eval/ folder, as in the official layout), else Kaggle's .csv,
    in image_dir or up to CELEBA_PARTITION_LEVELS folders above it, the nearest first; or None."""
    image_dir = image_dir.absolute()
    folders = [image_dir, *image_dir.parents[:CELEBA_PARTITION_LEVELS]]
    names = (f"{CELEBA_PARTITION}.txt", f"Eval/{CELEBA_PARTITION}.txt", f"{CELEBA_PARTITION}.csv")
    return next((f / n for n in names for f in folders if (f / n).is_file()), None)


def _read_partition(path):
    """{file name: split} from list_eval_partition.txt (`000001.jpg 0`) or .csv (`image_id,partition`)."""
    try:
        if path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: a BOM from Excel
                rows = [(row["image_id"], row["partition"].strip()) for row in csv.DictReader(f)]
        else:
            rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        return {name: CELEBA_CODES[code] for name, code in rows}
    except (KeyError, ValueError) as e:
        raise ValueError(f"cannot parse {path} ({type(e).__name__}: {e}): expected lines '000001.jpg 0' "
                         f"(.txt) or a header 'image_id,partition' (.csv), partitions 0, 1 or 2") from None


def _split_by_number(name):
    """CelebA's split of a file from its number (the official partition is contiguous), or None."""
    stem = Path(name).stem
    if not (stem.isascii() and stem.isdigit()):
        return None
    return next((split for split, last in CELEBA_LAST if 1 <= int(stem) <= last), None)


def celeba_splits(root):
    """{'train', 'val', 'test': image paths sorted by name} of a raw CelebA tree in any of its layouts
    (official, torchvision, Kaggle, bare folder; root may also be the image folder or CelebA/ itself).

    The split comes from list_eval_partition.txt, else list_eval_partition.csv, else from the official
    file-number ranges. Listed files missing on disk and files on disk that are not listed are skipped
    with a one-line warning each.
    """
    image_dir, images = _celeba_images(root)
    partition_file = _find_partition_file(image_dir)
    if partition_file:
        partition = _read_partition(partition_file)
        assigned = {p: partition.get(p.name) for p in images}
        missing = len(partition.keys() - {p.name for p in images})
        if missing:
            _warn(f"{missing} images listed in {partition_file} are missing under {image_dir}: skipped")
        ignored = f"not listed in {partition_file}"
    else:
        _warn(f"no {CELEBA_PARTITION}.txt or .csv near {image_dir}: splitting by the official file-number ranges")
        assigned = {p: _split_by_number(p.name) for p in images}
        ignored = "not named 000001.jpg to 202599.jpg"
    unassigned = sum(split is None for split in assigned.values())
    if unassigned == len(images):
        raise ValueError(f"no usable images found under {root}: all {len(images)} images in {image_dir} are {ignored}")
    if unassigned:
        _warn(f"{unassigned} images in {image_dir} are {ignored}: ignored")
    return {split: [p for p, s in assigned.items() if s == split] for split in SPLITS}  # images are sorted


# Any dataset


def organized_splits(root):
    """{'train', 'val', 'test': image paths at any depth} when root has train/ and val/ folders (test/ is
    optional), else None; ValueError naming the missing one when it has only one of them."""
    root = Path(root)
    missing = [split for split in ("train", "val") if not (root / split).is_dir()]
    if len(missing) == 1:
        raise ValueError(f"{root} has no {missing[0]}/ folder: an organized tree has train/ and val/ (test/ is optional)")
    if missing:
        return None
    return {split: images.list_images(root / split) if (root / split).is_dir() else [] for split in SPLITS}


RAW_DATASETS = ("comics", "celeba")


def find_splits(root, dataset, val_frac=0.1, test_frac=0.1, seed=0):
    """{'train', 'val', 'test': image paths} of an organized tree, else of a raw dataset tree: 'comics'
    (split by book, advert pages dropped if predadpages.txt is found) or 'celeba' (official partition).
    Raises ValueError when no training image is found."""
    if dataset not in RAW_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: use one of {', '.join(RAW_DATASETS)}")
    splits = organized_splits(root)
    if splits is None and dataset == "comics":
        splits = comics_splits(root, val_frac, test_frac, seed, ads_file=find_ads_file(root))
    elif splits is None:
        splits = celeba_splits(root)
    if not splits["train"]:
        raise ValueError(f"no images found under {Path(root) / 'train'}: expected images in train/ and val/")
    return splits


# Reorganization: raw tree -> OUT/<split>/..., copied or pre-resized


def _shorter_side(img, size):
    """COMICS: the shorter side down to size (Pix2Pix's load size); smaller panels are kept as they are."""
    return images.resize_shorter(img, size) if min(img.size) > size else img


PREPARE = {"shorter": _shorter_side, "center-square": images.center_square}
RESIZE = {"comics": "shorter", "celeba": "center-square"}  # how --size pre-resizes each dataset (its training preprocessing)


def _reorganize_one(task, size, prepare):
    """Write one destination file atomically -> (status, source, reason); runs in a worker process."""
    src, dst = task
    if os.path.exists(dst):
        return "skipped", src, None
    tmp = str(utils.temporary_name(dst))
    try:
        if size is None:
            shutil.copyfile(src, tmp)  # bytes unchanged, nothing decoded: copying is for speed
        else:
            img, reason = images.try_load_image(src, min_side=size)  # JPEG draft decoding at the reduced scale
            if img is None:
                return "failed", src, reason
            PREPARE[prepare](img, size).save(tmp, "JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING)
        os.replace(tmp, dst)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if e.errno in DESTINATION_ERRORS:
            raise
        return "failed", src, f"{type(e).__name__}: {e}"
    return "written", src, None


def _report_failed(failed, out_root):
    """Print the unreadable sources and list them all in OUT/unreadable.txt (removed when there are none)."""
    listing = Path(out_root) / "unreadable.txt"
    if not failed:
        listing.unlink(missing_ok=True)  # a rerun that got everything leaves no stale list
        return
    listing.write_text("".join(f"{src}\t{reason}\n" for src, reason in failed))
    _warn(f"{len(failed)} unreadable files skipped (all listed in {listing}):")
    for src, reason in failed[:MAX_PRINTED]:
        print(f"  {src}: {reason}", file=sys.stderr)
    if len(failed) > MAX_PRINTED:
        print(f"  ... and {len(failed) - MAX_PRINTED} more", file=sys.stderr)


def reorganize(jobs, out_root, size=None, workers=None, desc="", prepare="shorter"):
    """Write each (source, relative destination) job to out_root/destination; the sources are only read.

    size None copies the bytes; size N decodes, applies PREPARE[prepare] ('shorter': shorter side down to
    N; 'center-square': largest centered square, resized to N x N) and saves a JPEG (suffix .jpg).
    Rerunnable: every write is atomic and existing destinations are skipped. Unreadable sources (found
    only when decoding) are listed at the end, not fatal.
    Returns {'written': count, 'skipped': count, 'failed': [(source, reason)]}.
    """
    if prepare not in PREPARE:
        raise ValueError(f"unknown prepare {prepare!r}: use one of {sorted(PREPARE)}")
    out_root, workers = Path(out_root), workers or os.cpu_count()
    tasks = []
    for src, relative in jobs:
        dst = out_root / relative
        tasks.append((str(src), str(dst if size is None else dst.with_suffix(".jpg"))))
    for folder in sorted({os.path.dirname(dst) for _, dst in tasks}):  # once here, not once per file
        os.makedirs(folder, exist_ok=True)
    work = partial(_reorganize_one, size=size, prepare=prepare)
    chunksize = max(1, min(MAX_CHUNK, len(tasks) // (workers * 4)))
    summary = {"written": 0, "skipped": 0, "failed": []}
    # workers=1 forks nothing: one thread of this process does the work
    with (Pool if workers > 1 else ThreadPool)(workers) as pool, tqdm(total=len(tasks), desc=desc, unit="file") as bar:
        for status, src, reason in pool.imap_unordered(work, tasks, chunksize):
            if status == "failed":
                summary["failed"].append((src, reason))
            else:
                summary[status] += 1
            bar.update()
    summary["failed"].sort()
    _report_failed(summary["failed"], out_root)
    return summary


def comics_jobs(splits):
    """(panel, '<split>/<book_id>/<page>_<panel>.jpg') for every panel of every split."""
    return [(p, f"{split}/{p.parent.name}/{p.stem}.jpg") for split in SPLITS for p in splits[split]]


def celeba_jobs(splits):
    """(image, '<split>/<name>') for every image of every split ('<split>/000001.jpg')."""
    return [(p, f"{split}/{p.name}") for split in SPLITS for p in splits[split]]


def reorganize_parser():
    parser = utils.Parser(formatter_class=utils.HelpFormatter,
                          description="Write a raw COMICS or CelebA tree as OUT/train, OUT/val and "
                                      "OUT/test, copied or pre-resized; rerunnable, the raw tree is only read.")
    datasets = parser.add_subparsers(dest="dataset", required=True)
    comics = datasets.add_parser("comics", help="COMICS panels, split by book")
    comics.add_argument("raw", type=Path, metavar="RAW", help="raw_panel_images/, its parent or the doubled folder")
    comics.add_argument("out", type=Path, metavar="OUT", help="output root (not inside RAW)")
    comics.add_argument("--size", type=int, metavar="N", help="shorter side down to N pixels, e.g. 286 (default: copy)")
    comics.add_argument("--val-frac", type=float, default=0.1, help="fraction of books for validation")
    comics.add_argument("--test-frac", type=float, default=0.1, help="fraction of books for test")
    comics.add_argument("--split-seed", type=int, default=0, help="seed of the split by book (as train.py's)")
    comics.add_argument("--ads", type=Path, metavar="FILE", help="predadpages.txt (default: found next to RAW)")
    celeba = datasets.add_parser("celeba", help="CelebA aligned faces, official partition")
    celeba.add_argument("raw", type=Path, metavar="RAW", help="official, torchvision, Kaggle or bare CelebA folder")
    celeba.add_argument("out", type=Path, metavar="OUT", help="output root (not inside RAW)")
    celeba.add_argument("--size", type=int, metavar="N", help="center square to N x N, e.g. 128 (default: copy)")
    celeba.add_argument("--train-limit", type=int, metavar="N", help="keep the first N training images by name")
    celeba.add_argument("--val-limit", type=int, metavar="N", help="keep the first N validation images by name")
    for sub in (comics, celeba):
        sub.add_argument("--workers", type=int, metavar="N", help="processes (default: all CPU cores)")
    return parser


def _raw_splits(args):
    """(splits, jobs, prepare) for the dataset named on the command line."""
    if args.dataset == "comics":
        ads_file = args.ads or find_ads_file(args.raw)
        print(f"advert pages: {ads_file or 'no ' + COMICS_ADS_FILE + ' found, all pages kept'}")
        splits = comics_splits(args.raw, args.val_frac, args.test_frac, args.split_seed, ads_file)
        return splits, comics_jobs(splits), RESIZE["comics"]
    splits = celeba_splits(args.raw)
    splits["train"], splits["val"] = splits["train"][:args.train_limit], splits["val"][:args.val_limit]
    return splits, celeba_jobs(splits), RESIZE["celeba"]


def reorganize_main(argv=None):
    """Command line of the reorganization; errors are one line on stderr and exit code 2."""
    args = reorganize_parser().parse_args(argv)
    raw, out = args.raw.resolve(), args.out.resolve()
    if out == raw or raw in out.parents:
        print(f"error: OUT {args.out} must not be RAW or inside it: the raw tree is only read", file=sys.stderr)
        sys.exit(2)
    try:
        splits, jobs, prepare = _raw_splits(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    summary = reorganize(jobs, out, args.size, args.workers, desc=args.dataset, prepare=prepare)
    counts = ", ".join(f"{split} {len(splits[split]):,}" for split in SPLITS)
    print(f"{out}: {counts} files; written {summary['written']:,}, already there {summary['skipped']:,}, "
          f"unreadable {len(summary['failed']):,}")
    return summary


# ----------------------------------------------------------------------------------------------------
# Datasets. Workers decode and apply the task's transform (colorize.py, inpaint.py: resize, crop and flip,
# in PIL and uint8); colour conversion and hole masking run later, on whole batches on the training device.


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffle by seed + epoch, one shard per rank) that can start mid-epoch, and gives
    each sample the seed of its random jitter, so a resumed run sees exactly the crops and flips that an
    uninterrupted one would have seen, whatever the number of workers."""

    def __init__(self, dataset, num_replicas=1, rank=0, shuffle=True, seed=0, drop_last=False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start = 0

    def set_epoch(self, epoch, start=0):
        """start: how many of this rank's samples of the epoch were already used."""
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self):
        indices = list(super().__iter__())[self.start:]
        return iter([(i, self.seed, self.epoch) for i in indices])

    def __len__(self):
        return self.num_samples - self.start


class ImageDataset(Dataset):
    """Images from files, each item the task's transform of one image and, last, the index of the file it
    came from. An unreadable file (empty, truncated, not an image) is reported once and counted once in
    `skipped`, whichever loader worker meets it first. For training (replace=True) it is replaced by the
    next readable one, so a bad file never stops a 200-epoch run; for scoring (replace=False) it is left
    out (the item is None, dropped by collate_readable), so that no image is scored twice."""

    MAX_TRIES = 100  # consecutive unreadable files before giving up: then the tree itself is broken

    def __init__(self, files, transform, replace=True):
        # One numpy array, not a list of 1.2 million Path objects: reading Python objects in forked
        # workers touches their refcounts and slowly copies the whole list into every worker.
        self.files = np.array([os.fsencode(f) for f in files], dtype=np.bytes_)
        self.transform, self.replace = transform, replace
        # Shared with the loader's worker processes: the distinct unreadable files (a byte a file).
        self.skipped = mp.Value("i", 0)
        self.unreadable = mp.RawArray("b", len(files))

    def __len__(self):
        return len(self.files)

    def name(self, index):
        return os.fsdecode(self.files[index])

    def load(self, index):
        path = os.fsdecode(self.files[index])
        img, reason = images.try_load_image(path, self.transform.min_side)
        if img is None:
            with self.skipped.get_lock():
                first = not self.unreadable[index]
                self.unreadable[index] = 1
                self.skipped.value += first
            if first:
                print(f"warning: skipping unreadable image {utils.shown(path)} ({reason})", file=sys.stderr)
        return img

    def __getitem__(self, item):
        index, seed, epoch = item if isinstance(item, tuple) else (item, 0, 0)
        for k in range(self.MAX_TRIES if self.replace else 1):
            img = self.load((index + k) % len(self))
            if img is not None:
                return (*self.transform(img, np.random.default_rng([seed, epoch, index])), (index + k) % len(self))
        if not self.replace:
            return None
        raise RuntimeError(f"{self.MAX_TRIES} unreadable images in a row from image {index}: check the dataset")


def collate_readable(items):
    """A batch of the items that are not None (readable images), or None if there are none."""
    items = [item for item in items if item is not None]
    return default_collate(items) if items else None


if __name__ == "__main__":
    reorganize_main()
