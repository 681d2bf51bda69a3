"""`cnnarch models`, `summary`, `inception-cost`: output, JSON schema, exit codes."""

import json
import subprocess
import sys

import pytest

from cnnarch.cli import main
from cnnarch.models import list_models


def run(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_models_json(capsys):
    rc, out, err = run(["models", "--json"], capsys)
    assert rc == 0 and err == ""
    data = json.loads(out)
    rows = {m["name"]: m for m in data["models"]}
    assert list(rows) == list_models()  # every registered model, resnet1202 included
    assert rows["resnet50"]["macs"] == 4_089_184_256 and rows["resnet50"]["params"] == 25_557_032
    assert rows["resnet1202"]["params"] == 19_421_274
    assert rows["googlenet"]["params"] == 6_998_552  # inference network, no aux heads
    assert rows["googlenet_small"]["input_size"] == [3, 32, 32]
    assert all(m["flops"] == 2 * m["macs"] > 0 for m in rows.values())
    assert "conv + linear" in data["convention"]


def test_models_pattern(capsys):
    rc, out, _ = run(["models", "preact_*", "--json"], capsys)
    rows = json.loads(out)["models"]
    assert rc == 0 and [m["name"] for m in rows] == list_models("preact_*")
    assert {m["name"]: m["depth"] for m in rows}["preact_resnet1001"] == 1001
    assert rows[0]["options"]["identity_shortcut"] == "identity"  # every option, with its default
    rc, out, _ = run(["models", "*googlenet*"], capsys)
    assert rc == 0 and "googlenet_small" in out and "resnet50" not in out
    rc, out, err = run(["models", "nothing*"], capsys)
    assert rc == 2 and out == "" and "no registered model matches 'nothing*'" in err


def test_models_text(capsys):
    rc, out, _ = run(["models"], capsys)
    assert rc == 0
    assert "MACs = multiply-adds of conv + linear" in out and "FLOPs = 2 x MACs" in out
    assert "resnet50" in out and "4.089 G" in out and "25,557,032" in out


def test_summary_json_schema(capsys):
    rc, out, _ = run(["summary", "resnet18", "--json"], capsys)
    assert rc == 0
    data = json.loads(out)  # exactly one JSON object
    assert {"model", "input_size", "params", "macs", "flops", "layers"} <= set(data)
    assert data["model"] == "resnet18" and data["input_size"] == [3, 224, 224]
    assert data["params"] == 11_689_512 and data["macs"] == 1_814_073_344
    assert data["flops"] == 2 * data["macs"] == data["flop_counter_flops"]
    for layer in data["layers"]:
        assert {"name", "type", "output_shape", "params", "macs"} <= set(layer)
    assert sum(layer["macs"] for layer in data["layers"]) == data["macs"]
    assert [r["name"] for r in data["rows"]][:2] == ["conv1", "conv2_x"]


def test_summary_input_size_and_options(capsys):
    rc, out, _ = run(["summary", "googlenet_small", "--input-size", "3,8,8", "--json",
                      "--inception", "naive"], capsys)
    assert rc == 0
    data = json.loads(out)
    assert data["input_size"] == [3, 8, 8] and data["options"]["inception"] == "naive"
    rc, out, _ = run(["summary", "googlenet", "--aux", "--json"], capsys)
    data = json.loads(out)
    assert rc == 0 and data["mode"].startswith("train") and data["macs"] == 1_591_044_096


def test_summary_aux_counts_the_heads_where_a_map_is_1x1(capsys):
    """googlenet_tv at 32x32 ends in 1x1 maps: counting its training pass (one image) must not
    need batch statistics there."""
    counts = {}
    for flags in ([], ["--aux"]):
        rc, out, err = run(["summary", "googlenet_tv", "--input-size", "3,32,32", "--json", *flags], capsys)
        assert rc == 0, err
        counts[bool(flags)] = json.loads(out)["macs"]
    assert counts[True] > counts[False]  # the aux heads' multiply-adds are counted


def test_summary_text(capsys):
    rc, out, _ = run(["summary", "resnet20"], capsys)
    assert rc == 0
    assert "conv + linear" in out and "layer1.0.conv1" in out and "conv4_x" in out
    assert "agrees" in out


def test_summary_googlenet_compare_paper(capsys):
    rc, out, _ = run(["summary", "googlenet", "--compare", "paper"], capsys)
    assert rc == 0
    table = out[out.index("GoogLeNet Table 1"):]
    lines = {ln.split()[0]: ln for ln in table.splitlines() if ln.strip()}
    for row in ("conv1", "conv2", "3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b", "fc"):
        assert row in lines, row
    # 5b: ours 1,444,080 params / 70.7M MACs beside the paper's 1388K / 71M, with the diff
    assert lines["5b"].split()[3:] == ["384", "192", "384", "48", "128", "128", "1444.1", "1388",
                                       "+56.1", "70.7", "71", "-0.3"]
    assert lines["conv1"].split()[-3:] == ["118.0", "34", "+84.0"]


def test_summary_resnet50_compare_paper(capsys):
    rc, out, _ = run(["summary", "resnet50", "--compare", "paper"], capsys)
    assert rc == 0
    assert "3.8 x10^9" in out and "ours: 4.089 G" in out and "v1.5" in out
    assert "torchvision's v1.5 moves the downsampling stride" in out
    rc, out, _ = run(["summary", "resnet50", "--compare", "paper", "--stride-at", "1x1"], capsys)
    assert rc == 0 and "ours: 3.858 G" in out and "+0.058 G" in out


def test_inception_cost(capsys):
    rc, out, _ = run(["inception-cost"], capsys)
    assert rc == 0
    for text in ("854,196,224", "271,351,808", "= 672", "= 480", "358M", "358,055,936",
                 "3x3 conv, 192"):
        assert text in out, text
    rc, out, _ = run(["inception-cost", "--json", "--network", "googlenet_small"], capsys)
    data = json.loads(out)
    assert rc == 0
    assert (data["naive"]["macs"], data["bottleneck"]["macs"]) == (854_196_224, 271_351_808)
    assert (data["naive"]["output_depth"], data["bottleneck"]["output_depth"]) == (672, 480)
    assert data["slide"]["sum_with_double"] == 358_055_936
    assert data["network"]["model"] == "googlenet_small"


@pytest.mark.parametrize(("argv", "needle"), [
    (["summary", "resnt50"], "did you mean resnet50"),
    (["summary", "resnet50", "--input-size", "3,224"], "C,H,W"),
    (["summary", "resnet50", "--input-size", "a,b,c"], "C,H,W"),
    (["summary", "googlenet", "--input-size", "3,32,32"], "at least"),
    (["summary", "resnet50", "--input-size", "1,224,224"], "3 input channels"),
    (["summary", "googlenet", "--inception", "bogus"], "invalid choice"),
    (["summary", "googlenet", "--compare", "arxiv"], "invalid choice"),
    (["summary", "resnet50", "--inception", "naive"], "resnet50 has no option 'inception'"),
    (["summary", "googlenet", "--stride-at", "1x1"], "googlenet has no option 'stride_at'"),
    (["summary", "resnet50", "--aux"], "no auxiliary classifiers (only GoogLeNet"),
    (["summary", "preact_resnet20", "--compare", "paper"], "is not a ResNet"),
    (["inception-cost", "--network", "resnet50"], "no Inception modules"),
    (["models", "0", "\r"], "unrecognized arguments: \\r (see --help)"),  # written as an escape
    (["summary", "res\x1b[2Jnet"], "unknown model 'res\\x1b[2Jnet'"),
])
def test_bad_input_exit_2_one_line(argv, needle, capsys):
    rc, out, err = run(argv, capsys)
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert needle in err


@pytest.mark.parametrize("argv", [["models"], ["models", "resnet*", "--json"], ["--help"]])
def test_listing_does_not_import_torch(argv):
    code = ("import sys; from cnnarch.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "import cnnarch; cnnarch.list_models('resnet*')\n"
            "assert 'torch' not in sys.modules, 'list_models imported torch'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resnet50" in done.stdout or "usage" in done.stdout


@pytest.mark.parametrize(("command", "option", "model", "kwarg"), [
    ("summary", "--inception", "googlenet_small", "inception"),
    ("train", "--inception", "googlenet_small", "inception"),
    ("summary", "--stride-at", "resnet50", "stride_at"),
    ("train", "--stride-at", "resnet50", "stride_at"),
    ("train", "--shortcut", "resnet20", "shortcut"),
])
def test_a_model_flag_offers_exactly_what_the_builder_accepts(command, option, model, kwarg):
    from cnnarch.cli import build_parser
    from cnnarch.errors import UserError
    from cnnarch.models import create_model

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    flag = next(a for a in sub.choices[command]._actions if option in a.option_strings)
    with pytest.raises(UserError) as refused:
        create_model(model, **{kwarg: "no-such-value"})
    accepted = str(refused.value).split("choose one of ", 1)[1]
    assert accepted == ", ".join(repr(c) for c in flag.choices)
