"""Dataset trees: the raw COMICS and CelebA layouts, the splits, and the reorganization command line.

Every tree is a tiny fake in tmp_path, laid out as the real downloads are (COMICS by Iyyer et al. 2017; CelebA official, torchvision and Kaggle).
"""
import numpy as np
import pytest
from PIL import Image

from classes import (
    celeba_splits,
    comics_books,
    comics_splits,
    find_ads_file,
    find_splits,
    organized_splits,
    reorganize,
    reorganize_main,
    split_books,
)


def write_jpeg(path, size=(12, 10), seed=0):
    """A tiny real JPEG of noise, size = (W, H)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG" if path.suffix == ".png" else "JPEG")
    return path


def snapshot(root):
    """Every path below root with its mtime and size: equal snapshots mean an untouched tree."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*"))}


# ----------------------------------------------------------------------------------------------------
# COMICS

# Book 2 has pages >= 10 and panels >= 10 (a string sort would put them before 2), upper-case and .jpeg
# suffixes; book ids have gaps and go past 10 for the same reason.
COMICS = {
    0: ["0_0.jpg", "0_1.jpg", "1_0.jpg"],
    1: ["0_0.jpg"],
    2: ["0_0.jpg", "10_0.jpg", "11_0.jpg", "1_0.jpg", "2_0.jpg", "2_1.jpg", "2_10.jpg", "3_0.jpg", "4_0.JPG",
        "5_0.jpeg"],
    3: ["0_0.jpg", "1_0.jpg"],
    5: ["0_0.jpg"],
    9: ["7_3.jpg"],
    10: ["0_0.jpg", "1_0.jpg"],
    11: ["5_0.jpg"],
}
BOOK_2_ORDER = ["0_0.jpg", "1_0.jpg", "2_0.jpg", "2_1.jpg", "2_10.jpg", "3_0.jpg", "4_0.JPG", "5_0.jpeg", "10_0.jpg",
                "11_0.jpg"]
ADS = "2---3\n11---5\n\n"  # book 11 has nothing but its advert page


@pytest.fixture
def comics_raw(tmp_path):
    """comics/raw_panel_images/raw_panel_images/<book>/<page>_<panel>.jpg (doubled, as after a careless
    untar), with strays, and comics/predadpages.txt; returns comics/."""
    root = tmp_path / "comics"
    books = root / "raw_panel_images" / "raw_panel_images"
    for book_id, names in COMICS.items():
        for k, name in enumerate(names):
            write_jpeg(books / str(book_id) / name, seed=book_id * 100 + k)
    write_jpeg(books / "extras" / "0_0.jpg")  # not a numeric book folder
    write_jpeg(books / "12a" / "0_0.jpg")
    write_jpeg(books / "2" / "cover.jpg")  # not <page>_<panel>
    for stray in ("2/.DS_Store", "2/notes.txt", "2/._0_0.jpg", ".DS_Store", "notes.txt"):
        (books / stray).write_bytes(b"\x00junk")
    (root / "predadpages.txt").write_text(ADS)
    return root


def test_comics_books_numeric_order_and_strays_ignored(comics_raw):
    books = comics_books(comics_raw)
    assert list(books) == sorted(COMICS)
    assert [p.name for p in books[2]] == BOOK_2_ORDER
    assert {b: len(panels) for b, panels in books.items()} == {b: len(names) for b, names in COMICS.items()}


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_comics_root_forms_and_ads_file(comics_raw, depth):
    root = comics_raw / "/".join(["raw_panel_images"] * depth) if depth else comics_raw
    assert comics_books(root) == comics_books(comics_raw)
    assert find_ads_file(root) == (comics_raw / "predadpages.txt").absolute()


def test_advert_pages_dropped(comics_raw):
    books = comics_books(comics_raw, ads_file=find_ads_file(comics_raw))
    assert "3_0.jpg" not in [p.name for p in books[2]] and len(books[2]) == len(COMICS[2]) - 1
    assert 11 not in books  # a book left without panels is no book


def test_no_books_is_a_clear_error(tmp_path):
    (tmp_path / "raw_panel_images" / "not_a_book").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images found under .*raw_panel_images/<book_id>"):
        comics_books(tmp_path)
    assert find_ads_file(tmp_path) is None


def test_split_books_disjoint_complete_deterministic():
    ids = list(range(0, 400, 7))
    splits = split_books(ids, 0.2, 0.1, seed=0)
    parts = [set(splits[s]) for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(ids) and set().union(*parts) == set(ids)
    assert [len(p) for p in parts] == [40, 12, 6]  # 58 books: round(11.6), round(5.8)
    assert all(splits[s] == sorted(splits[s]) for s in splits)
    assert split_books(reversed(ids), 0.2, 0.1, seed=0) == splits  # input order does not matter
    assert split_books(ids, 0.2, 0.1, seed=1) != splits


def test_split_books_sizes():
    assert {s: len(v) for s, v in split_books([4, 8, 15]).items()} == {"train": 1, "val": 1, "test": 1}
    assert split_books([4, 8]) == {"train": [4, 8], "val": [], "test": []}
    assert split_books([4, 8, 15], val_frac=0)["val"] == []
    big = split_books(range(3948), 0.1267, 0.1267)  # the COMICS authors' 500 dev and 500 test books
    assert (len(big["val"]), len(big["test"])) == (500, 500)
    with pytest.raises(ValueError):
        split_books(range(10), 0.6, 0.5)


def test_comics_splits_keep_books_whole(comics_raw):
    splits = comics_splits(comics_raw, 0.25, 0.25, seed=3)
    books = {s: {p.parent.name for p in paths} for s, paths in splits.items()}
    assert not (books["train"] & books["val"] or books["train"] & books["test"] or books["val"] & books["test"])
    assert books["train"] | books["val"] | books["test"] == {str(b) for b in COMICS}
    assert sum(map(len, splits.values())) == sum(map(len, COMICS.values()))


# ----------------------------------------------------------------------------------------------------
# CelebA

CELEBA_CODES = {"000001.jpg": 0, "000002.jpg": 0, "000003.jpg": 0, "000004.jpg": 0, "000005.jpg": 1, "000006.jpg": 2}
# layout: (image folder, partition file, folders the user may point at) relative to tmp_path
CELEBA_LAYOUTS = {
    "official": ("CelebA/Img/img_align_celeba", "CelebA/Eval/list_eval_partition.txt", ["", "CelebA"]),
    "torchvision": ("celeba/img_align_celeba", "celeba/list_eval_partition.txt", ["", "celeba"]),
    "kaggle": ("img_align_celeba/img_align_celeba", "list_eval_partition.csv", ["", "img_align_celeba"]),
    "bare": ("img_align_celeba", "list_eval_partition.txt", [""]),
}
CELEBA_ROOTS = [(layout, root) for layout, (images, _, roots) in CELEBA_LAYOUTS.items() for root in roots + [images]]


def write_partition(path, codes):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        path.write_text("image_id,partition\n" + "".join(f"{n},{c}\n" for n, c in codes.items()))
    else:
        path.write_text("".join(f"{n} {c}\n" for n, c in codes.items()))


def build_celeba(tmp_path, layout, size=(18, 22)):
    """Six faces 000001..000006 (partition 4 train, 1 val, 1 test) in the layout; returns the image folder."""
    images, partition, _ = CELEBA_LAYOUTS[layout]
    for k, name in enumerate(CELEBA_CODES):
        write_jpeg(tmp_path / images / name, size, seed=k)
    write_partition(tmp_path / partition, CELEBA_CODES)
    return tmp_path / images


@pytest.mark.parametrize("layout, root", CELEBA_ROOTS)
def test_celeba_layouts(tmp_path, layout, root):
    image_dir = build_celeba(tmp_path, layout)
    splits = celeba_splits(tmp_path / root)
    names = {s: [p.name for p in v] for s, v in splits.items()}
    assert names == {"train": ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"], "val": ["000005.jpg"],
                     "test": ["000006.jpg"]}
    assert all(p.parent == image_dir for v in splits.values() for p in v)


def test_celeba_file_number_ranges_without_partition_file(tmp_path, capsys):
    numbers = [1, 162770, 162771, 182637, 182638, 202599, 202600]
    for n in numbers:
        write_jpeg(tmp_path / "img_align_celeba" / f"{n:06d}.jpg")
    write_jpeg(tmp_path / "img_align_celeba" / "face.jpg")
    splits = celeba_splits(tmp_path / "img_align_celeba")
    assert {s: [int(p.stem) for p in v] for s, v in splits.items()} == {
        "train": [1, 162770], "val": [162771, 182637], "test": [182638, 202599]}
    assert "2 images" in capsys.readouterr().err  # 202600.jpg and face.jpg


def test_celeba_missing_and_unlisted_files_skipped(tmp_path, capsys):
    image_dir = build_celeba(tmp_path, "torchvision")
    write_partition(tmp_path / CELEBA_LAYOUTS["torchvision"][1], {**CELEBA_CODES, "000007.jpg": 0, "000008.jpg": 2})
    write_jpeg(image_dir / "000009.jpg")
    splits = celeba_splits(tmp_path)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4, 1, 1]
    err = capsys.readouterr().err
    assert "2 images listed" in err and "1 images in" in err


def test_celeba_txt_preferred_over_csv(tmp_path):
    build_celeba(tmp_path, "torchvision")
    write_partition(tmp_path / "celeba" / "list_eval_partition.csv", dict.fromkeys(CELEBA_CODES, 2))
    assert len(celeba_splits(tmp_path)["train"]) == 4


def test_celeba_errors(tmp_path):
    with pytest.raises(ValueError, match="no images found under"):
        celeba_splits(tmp_path)
    build_celeba(tmp_path, "bare")
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(ValueError, match="cannot parse"):
        celeba_splits(tmp_path)


# ----------------------------------------------------------------------------------------------------
# Organized trees and find_splits


def test_organized_tree(tmp_path, comics_raw):
    for name in ("train/a/b/1.jpg", "train/2.png", "val/3.jpg"):
        write_jpeg(tmp_path / "tree" / name)
    splits = organized_splits(tmp_path / "tree")
    names = {s: [p.name for p in v] for s, v in splits.items()}
    assert names == {"train": ["2.png", "1.jpg"], "val": ["3.jpg"], "test": []}  # any depth
    assert organized_splits(comics_raw) is None
    assert find_splits(tmp_path / "tree", "comics") == splits == find_splits(tmp_path / "tree", "celeba")


def test_find_splits_raw_trees(tmp_path, comics_raw):
    colorize = find_splits(comics_raw, "comics", 0.25, 0.25)
    assert "11" not in {p.parent.name for v in colorize.values() for p in v}  # predadpages.txt found and applied
    build_celeba(tmp_path / "faces", "official")
    assert [len(v) for v in find_splits(tmp_path / "faces", "celeba").values()] == [4, 1, 1]
    (tmp_path / "empty").mkdir()
    for dataset in ("comics", "celeba"):
        with pytest.raises(ValueError, match="no images found under"):
            find_splits(tmp_path / "empty", dataset)
    with pytest.raises(ValueError, match="unknown dataset"):
        find_splits(tmp_path / "empty", "denoise")


# ----------------------------------------------------------------------------------------------------
# Reorganization


@pytest.fixture
def messy_source(tmp_path):
    """src/ with readable images of several sizes, an empty file and a truncated JPEG -> (src, jobs)."""
    src = tmp_path / "src"
    for name, size in (("big.jpg", (40, 30)), ("wide.jpg", (12, 10)), ("small.jpg", (6, 5)), ("flat.png", (20, 20))):
        write_jpeg(src / name, size)
    (src / "empty.jpg").write_bytes(b"")
    whole = write_jpeg(src / "cut.jpg", (64, 64)).read_bytes()
    (src / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    jobs = [(p, f"train/book/{p.name}") for p in sorted(src.iterdir())]
    return src, jobs


def test_reorganize_resize_survives_bad_files_and_reruns(tmp_path, messy_source):
    src, jobs = messy_source
    before, out = snapshot(src), tmp_path / "out"
    summary = reorganize(jobs, out, size=8, workers=2)
    bad = [str(src / "cut.jpg"), str(src / "empty.jpg")]
    assert summary["written"] == 4 and summary["skipped"] == 0 and [s for s, _ in summary["failed"]] == bad
    assert [line.split("\t")[0] for line in (out / "unreadable.txt").read_text().splitlines()] == bad
    sizes = {p.name: Image.open(p).size for p in (out / "train" / "book").iterdir()}
    assert sizes == {"big.jpg": (11, 8), "wide.jpg": (10, 8), "small.jpg": (6, 5), "flat.jpg": (8, 8)}
    again = reorganize(jobs, out, size=8, workers=1)
    assert again["written"] == 0 and again["skipped"] == 4 and len(again["failed"]) == 2
    assert snapshot(src) == before
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_reorganize_copy_keeps_bytes(tmp_path, messy_source):
    src, jobs = messy_source
    summary = reorganize(jobs, tmp_path / "out", workers=1)
    assert summary == {"written": 6, "skipped": 0, "failed": []}  # copying decodes nothing
    for p, relative in jobs:
        assert (tmp_path / "out" / relative).read_bytes() == p.read_bytes()
    assert not (tmp_path / "out" / "unreadable.txt").exists()


# ----------------------------------------------------------------------------------------------------
# Command line


@pytest.mark.parametrize("inside", [True, False])
def test_cli_refuses_out_inside_raw(comics_raw, capsys, inside):
    out = comics_raw / "organized" if inside else comics_raw
    before = snapshot(comics_raw)
    with pytest.raises(SystemExit) as e:
        reorganize_main(["comics", str(comics_raw), str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    assert snapshot(comics_raw) == before


def test_cli_comics(tmp_path, comics_raw, capsys):
    out = tmp_path / "comics_8"
    reorganize_main(["comics", str(comics_raw), str(out), "--size", "8", "--workers", "1", "--val-frac", "0.25",
                     "--test-frac", "0.25", "--split-seed", "1"])
    splits = organized_splits(out)
    books = {s: {p.parent.name for p in v} for s, v in splits.items()}
    assert not (books["train"] & books["val"] or books["train"] & books["test"] or books["val"] & books["test"])
    assert books["train"] | books["val"] | books["test"] == {str(b) for b in COMICS if b != 11}
    assert all(min(Image.open(p).size) == 8 for v in splits.values() for p in v)
    assert "train" in capsys.readouterr().out


def test_cli_celeba(tmp_path, capsys):
    build_celeba(tmp_path / "raw", "kaggle")
    reorganize_main(["celeba", str(tmp_path / "raw"), str(tmp_path / "out"), "--size", "16", "--workers", "1",
                     "--train-limit", "2"])
    splits = organized_splits(tmp_path / "out")
    assert [[p.name for p in splits[s]] for s in ("train", "val", "test")] == [
        ["000001.jpg", "000002.jpg"], ["000005.jpg"], ["000006.jpg"]]
    assert all(Image.open(p).size == (16, 16) for v in splits.values() for p in v)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        reorganize_main(["celeba", str(tmp_path / "nothing"), str(tmp_path / "out2")])
    assert e.value.code == 2 and capsys.readouterr().err.startswith("error: no images found under")
