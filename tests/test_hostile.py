"""generate.py against hostile folders and awkward shapes: link loops, decompression bombs, bad files
among good ones, bands against whole images, outputs independent of their batch and of worker processes."""
import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import colorize
import images
import utils
import workers
from conftest import run_generate, truncate, write_image


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks on one thread: two threads spend more time waiting for each other than computing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def outputs(folder):
    return {p.relative_to(folder).as_posix(): np.asarray(Image.open(p)) for p in sorted(Path(folder).rglob("*.png"))}


def bomb(path, side=30000):
    """A valid one-bit PNG of side x side pixels (900 megapixels decoded) that is about 100 KB on disk."""
    row = bytes(1 + side // 8)  # filter byte + a row of black
    deflate, rows = zlib.compressobj(9), []
    for _ in range(side // 1000):
        rows.append(deflate.compress(row * 1000))
    data = b"".join(rows) + deflate.flush()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def peak_rss_reset():
    """Reset this process's peak RSS (VmHWM) where Linux allows it; False elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb():
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def test_link_loop_is_walked_once(tmp_path, untrained, capsys):
    src, outside = tmp_path / "in", tmp_path / "outside"
    write_image(src / "a.png")
    write_image(src / "sub" / "b.png", seed=1)
    os.symlink("..", src / "sub" / "loop")  # sub/loop/sub/loop/... forever
    os.symlink(src / "sub", src / "again")  # a second way into sub
    original = write_image(outside / "x.png", seed=2).read_bytes()
    os.symlink(outside / "x.png", src / "link.png")  # a file outside the tree: read, never written
    assert [p.relative_to(src).as_posix() for p in images.list_images(src)] == ["a.png", "link.png", "sub/b.png"]
    capsys.readouterr()
    assert run_generate(untrained["colorize"], src, tmp_path / "out") == 0
    assert sorted(outputs(tmp_path / "out")) == ["a.png", "link.png", "sub/b.png"]
    assert not (tmp_path / "out" / "link.png").is_symlink() and (outside / "x.png").read_bytes() == original
    err = capsys.readouterr().err
    assert err.count("sub/loop") == 1 and err.count("walked already") == 2  # the loop and the second link


def test_link_into_the_output_is_not_walked(tmp_path, untrained, capsys):
    write_image(tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path / "out", tmp_path / "in" / "results")
    for _ in range(2):  # the second run would find the first run's outputs through the link
        assert run_generate(untrained["colorize"], tmp_path / "in", tmp_path / "out") == 0
    assert sorted(outputs(tmp_path / "out")) == ["a.png"]
    assert "it leads to the output folder" in capsys.readouterr().err


def test_bomb_is_refused_from_its_header(tmp_path, untrained, capsys):
    (tmp_path / "in").mkdir()
    path = bomb(tmp_path / "in" / "bomb.png")
    assert path.stat().st_size < 200_000
    with pytest.raises(ValueError, match="30000x30000 is 900 megapixels, over the limit of 179$"):
        images.open_image(path, 2 * Image.MAX_IMAGE_PIXELS)
    measured = peak_rss_reset()
    before = peak_rss_mb() if measured else 0
    assert run_generate(untrained["colorize"], tmp_path / "in", tmp_path / "out") == 1
    if measured:
        assert peak_rss_mb() - before < 100  # decoding would take 900 MB
    assert "bomb.png: ValueError: 30000x30000 is 900 megapixels" in capsys.readouterr().err


def test_mixed_folder_writes_every_good_image_and_names_each_bad_one_once(tmp_path, untrained, capsys):
    src = tmp_path / "in"
    for i, size in enumerate([(40, 30), (64, 64), (30, 90)]):
        write_image(src / f"good{i}.jpg", size=size, seed=i)
    write_image(src / "scan.png", size=(300, 200))  # too large for --max-pixels below
    bomb(src / "bomb.png")
    (src / "fake.jpg").write_text("not a jpeg")
    (src / "empty.png").write_bytes(b"")
    truncate(write_image(src / "truncated.png", size=(64, 64)))
    os.symlink("..", src / "loop")
    assert run_generate(untrained["colorize"], src, tmp_path / "out", "--max-pixels", 50_000, "--batch-size", 2) == 1
    assert sorted(outputs(tmp_path / "out")) == ["good0.png", "good1.png", "good2.png"]
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("failed: ")]
    reasons = {Path(line.split(": ")[1]).name: line for line in failed}
    assert len(failed) == len(reasons) == 5
    assert "300x200 is 0.06 megapixels, over the limit of 0.05" in reasons["scan.png"]
    assert "900 megapixels" in reasons["bomb.png"] and "cannot identify" in reasons["fake.jpg"]
    assert "truncated" in reasons["truncated.png"] and "empty.png" in reasons


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_colorize_bands_equal_the_whole_image(monkeypatch, mode):
    """The band-wise numpy colour path against the whole-image torch path (utils' Lab, F.interpolate)."""
    rng = np.random.default_rng(0)
    page = Image.fromarray(rng.integers(0, 256, (203, 157, 3)).astype(np.uint8)).convert(mode)
    fake = torch.from_numpy(rng.uniform(-0.8, 0.8, (2, 48, 40)).astype(np.float32))
    item = dict(crop=(5, 3, 40, 31))  # the image inside the network's padding
    monkeypatch.setattr(images, "BAND_PIXELS", 157 * 10)  # bands of 10 rows
    banded = np.concatenate([out for _, out in colorize.TASK.finish_image(item, fake, page, None)])
    rgb = torch.from_numpy(np.array(page.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    ab = F.interpolate(fake[None, :, 5:45, 3:34] * colorize.AB_SCALE, size=(203, 157), mode="bilinear", align_corners=False)
    whole = colorize.lab_to_rgb(torch.cat([colorize.rgb_to_lab(rgb)[:, :1], ab], dim=1))[0]
    whole = (whole * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.abs(banded.astype(int) - whole).max() <= 1 and (banded != whole).mean() < 0.01


def test_inpaint_bands_equal_one_band(tmp_path, untrained, monkeypatch):
    write_image(tmp_path / "in" / "photo.png", size=(90, 70), seed=4)
    run_generate(untrained["inpaint"], tmp_path / "in", tmp_path / "whole")
    monkeypatch.setattr(images, "BAND_PIXELS", 90 * 3)
    run_generate(untrained["inpaint"], tmp_path / "in", tmp_path / "bands", "--save-comparison")
    assert np.array_equal(outputs(tmp_path / "whole")["photo.png"], outputs(tmp_path / "bands")["photo.png"])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # named, not auto: the same test on every CPU
@pytest.mark.parametrize("test_time", [["--norm-stats", "running"], ["--norm-stats", "image", "--test-dropout", "on"]])
def test_outputs_do_not_depend_on_the_batch(tmp_path, untrained, test_time, precision):
    sizes = [(40, 30), (41, 30), (30, 40), (64, 64), (50, 50), (200, 40)]  # several network shapes
    for i, size in enumerate(sizes):
        write_image(tmp_path / "all" / f"{i}.png", size=size, seed=i)
    write_image(tmp_path / "alone" / "3.png", size=sizes[3], seed=3)
    runs = {"out1": ("all", 1), "out4": ("all", 4), "out_alone": ("alone", 4)}
    for name, (folder, batch) in runs.items():
        assert run_generate(untrained["colorize"], tmp_path / folder, tmp_path / name, "--batch-size", batch, "--precision", precision,
                   *test_time) == 0
    one, four, alone = (outputs(tmp_path / name) for name in runs)
    assert all(np.array_equal(one[k], four[k]) for k in one) and np.array_equal(one["3.png"], alone["3.png"])


# 1 thread per worker: forked; 2: spawned, each worker a new Python that imports torch
@pytest.mark.parametrize("cores", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_worker_processes_write_the_same_outputs(tmp_path, untrained, monkeypatch, cores):
    for i, size in enumerate([(40, 30), (30, 90), (64, 64)]):
        write_image(tmp_path / "in" / f"{i}.png", size=size, seed=i)
    run_generate(untrained["colorize"], tmp_path / "in", tmp_path / "here", "--batch-size", 1)
    monkeypatch.setattr(workers, "cpu_count", lambda: cores)
    run_generate(untrained["colorize"], tmp_path / "in", tmp_path / "workers", "--workers", 2)  # overrides --workers 0
    here, pooled = outputs(tmp_path / "here"), outputs(tmp_path / "workers")
    assert here.keys() == pooled.keys() and all(np.array_equal(here[k], pooled[k]) for k in here)


def test_context_encoder_refuses_per_image_statistics(tmp_path, untrained):
    write_image(tmp_path / "in" / "a.png")
    with pytest.raises(SystemExit, match="--norm-stats image is not for the Context Encoder"):
        run_generate(untrained["inpaint"], tmp_path / "in", tmp_path / "out", "--norm-stats", "image")


def test_fifo_named_like_an_image_is_skipped_not_waited_for(tmp_path, untrained, capsys):
    write_image(tmp_path / "in" / "a.png")
    os.mkfifo(tmp_path / "in" / "pipe.png")  # opening it would wait for a writer forever
    assert run_generate(untrained["colorize"], tmp_path / "in", tmp_path / "out") == 0
    assert sorted(outputs(tmp_path / "out")) == ["a.png"]
    assert capsys.readouterr().err.count("pipe.png: a FIFO") == 1


def test_file_names_that_are_not_utf8(tmp_path, untrained, capsys):
    (tmp_path / "in").mkdir()
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes, as old archives have them
    write_image(tmp_path / "in" / name)
    write_image(tmp_path / "ref" / name)
    assert run_generate(untrained["colorize"], tmp_path / "in", tmp_path / "out", "--reference", tmp_path / "ref") == 0
    assert os.listdir(os.fsencode(tmp_path / "out")).count(b"caf\xe9.png") == 1
    assert [r["image"] for r in utils.read_csv(tmp_path / "out" / "scores.csv")] == ["caf\\xe9.png"]
    capsys.readouterr()


def test_a_worker_killed_by_the_system_fails_its_image_alone(tmp_path, untrained, monkeypatch, capsys):
    """The out-of-memory killer takes a worker down in the middle of an image: that image fails, every
    other is written, and the exit status says so."""
    for i in range(6):
        write_image(tmp_path / "in" / f"{i}.png", seed=i)
    write_image(tmp_path / "in" / "killer.png", seed=9)
    image_to_input = colorize.TASK.image_to_input

    def killed_on_killer(src, run):
        if Path(src).name == "killer.png":
            os.kill(os.getpid(), signal.SIGKILL)
        return image_to_input(src, run)

    monkeypatch.setattr(colorize.TASK, "image_to_input", killed_on_killer)  # forked workers inherit it
    monkeypatch.setattr(workers, "cpu_count", lambda: 2)  # 1 thread per worker: forked
    assert run_generate(untrained["colorize"], tmp_path / "in", tmp_path / "out", "--workers", 2, "--batch-size", 2) == 1
    assert sorted(outputs(tmp_path / "out")) == [f"{i}.png" for i in range(6)]
    assert "killer.png: its worker process was killed" in capsys.readouterr().err
