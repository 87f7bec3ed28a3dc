"""--precision auto: bf16 where the CPU executes it natively, fp32 where it would be emulated, decided from
the CPU's flags (mocked both ways here, so that it is tested on any machine) and recorded in the run."""
import json

import pytest
import torch

import generate
import train
import utils
from conftest import tiny_args, write_image

X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
X86_PLAIN = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve i8mm bf16\n"


@pytest.mark.parametrize("cpuinfo, feature", [(X86_BF16, "amx_bf16"), (X86_PLAIN, None), (ARM_BF16, "bf16")])
def test_the_native_bf16_feature_is_read_from_the_cpu_flags(tmp_path, cpuinfo, feature):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert utils.native_bf16_feature(tmp_path / "cpuinfo") == feature
    assert utils.native_bf16_feature(tmp_path / "missing") is None


@pytest.mark.parametrize("feature, expected", [("avx512_bf16", "bf16"), (None, "fp32")])
def test_auto_follows_the_cpu(monkeypatch, feature, expected):
    monkeypatch.setattr(utils, "native_bf16_feature", lambda: feature)
    precision, why = utils.resolve_precision("auto", torch.device("cpu"))
    assert precision == expected and (feature or "no native bf16") in why
    assert utils.resolve_precision("fp32", torch.device("cpu")) == ("fp32", "as asked")
    assert utils.resolve_precision("auto", torch.device("cuda"))[0] == "bf16"


@pytest.mark.parametrize("feature, expected", [("avx512_bf16", "bf16"), (None, "fp32")])
def test_the_choice_is_printed_and_recorded(tmp_path, monkeypatch, capsys, feature, expected):
    monkeypatch.setattr(utils, "native_bf16_feature", lambda: feature)
    train.main(tiny_args(tmp_path, "--stop-at", 1))
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (cfg["precision"], cfg["autocast"]) == ("auto", expected)
    assert f"1 x cpu, {expected} (auto: this CPU" in capsys.readouterr().out
    write_image(tmp_path / "in" / "a.png")
    generate.main(generate.get_parser().parse_args(["--checkpoint", str(tmp_path / "run" / "last.pt"), "--input",
                                                    str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--workers", "0"]))
    assert f"{expected}: auto: this CPU" in capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "generate.json").read_text())
    assert [r["settings"]["precision"] for r in record.values()] == [expected]
