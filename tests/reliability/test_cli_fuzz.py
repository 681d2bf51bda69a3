"""The command line never shows a stack trace for a user error.

Hypothesis generates argument lists (and TOML config files for ``train``) for every
sub-command ``cnnarch --help`` lists: wrong types, unknown flags and keys, out-of-range
numbers, missing files, folders where files belong, odd unicode paths. Each case runs
in-process through ``cnnarch.cli.main`` and must either succeed (exit 0) or exit 2 with a
one-line ``cnnarch ...: error: ...`` message. Any other exception fails the test (and
hypothesis prints the smallest argument list that shows it). Exit 1 is accepted only for
the two documented outcomes that are not user errors: a non-finite training loss and an
ONNX file that disagrees with PyTorch.

To keep the suite fast, valid-and-expensive work is bounded, never skipped silently:
training runs at most 2 iterations (``train`` is wrapped), and the ONNX exporter and the
benchmark timing are replaced by a sentinel raised *after* every argument check has
passed ("accepted"). ``complexity`` results are memoised. Network access is cut (downloads
fail as they would offline). The number of cases is printed at the end of the session.
"""

from __future__ import annotations

import sys
import urllib.error
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_h = sys.modules["cnnarch_reliability_helpers"]  # loaded by conftest.py before any test module
SETTINGS = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))


class Accepted(Exception):
    """Raised by a stubbed expensive call: every argument check before it passed."""


# --- the sandbox ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, tiny_run):
    """Files the generated arguments may point at (good, bad, missing, odd names)."""
    import shutil

    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("fuzz")
    run = root / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(".lock"))
    (root / "empty-dir").mkdir()
    (root / "text.txt").write_text("hello")
    (root / "not-a-checkpoint.pt").write_bytes(b"\x00" * 100)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "img.png")
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(root / "ünï cødé ✓.png")
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "bad.toml").write_text("epochs = = 3\n")
    return root


@pytest.fixture
def bounded(monkeypatch, sandbox, reliability_log):
    """Cap training, stub the exporter/benchmark timing, memoise complexity, cut the network."""
    import importlib

    import cnnarch.data.archives as archives
    import cnnarch.inference.bench as bench_mod
    import cnnarch.inference.onnx_export as export_mod
    import cnnarch.train as train_pkg

    real_train = train_pkg.train

    def capped_train(cfg, **kw):
        iters = min(cfg.iterations or 2, 2)
        return real_train(cfg.replace(iterations=iters, compile=False, workers=0, quiet=True), **kw)

    monkeypatch.setattr(train_pkg, "train", capped_train)

    def offline(*a, **k):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(archives.urllib.request, "urlopen", offline)

    def accepted(*a, **k):
        raise Accepted()

    monkeypatch.setattr(export_mod, "_export_program", accepted)
    monkeypatch.setattr(bench_mod, "count_flops", accepted)
    complexity_mod = importlib.import_module("cnnarch.analysis.complexity")
    real_complexity = complexity_mod.complexity
    cache = _COMPLEXITY_CACHE

    def memo(name, size=None, *a, **k):
        key = (name, tuple(size) if size is not None else None, a, tuple(sorted(k.items())))
        if key not in cache:
            cache[key] = real_complexity(name, size, *a, **k)
        return cache[key]

    monkeypatch.setattr(complexity_mod, "complexity", memo)
    monkeypatch.chdir(sandbox)  # default run folders (runs/...) land in the sandbox
    return sandbox


_COMPLEXITY_CACHE: dict = {}


def check(cli, argv, counts):
    """Run one case; assert the contract; tally the outcome."""
    try:
        result = cli(argv)
    except Accepted:
        counts["accepted (stub reached)"] = counts.get("accepted (stub reached)", 0) + 1
        return
    assert "Traceback" not in result.err, f"{argv}: {result.err[-3000:]}"
    if result.code == 0:
        counts["ok"] = counts.get("ok", 0) + 1
        return
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert lines, f"{argv}: exit {result.code} with no message"
    last = lines[-1]
    if result.code == 1:
        assert ("non-finite loss" in last or "disagrees" in last), f"{argv}: exit 1: {last}"
    else:
        assert result.code == 2, f"{argv}: exit {result.code}: {result.err[-2000:]}"
    assert last.startswith("cnnarch") and "error" in last, f"{argv}: {last!r}"
    counts[f"exit {result.code}"] = counts.get(f"exit {result.code}", 0) + 1


# --- strategies -----------------------------------------------------------------------------

ODD = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
              min_size=1, max_size=12)
INTS = st.one_of(st.sampled_from(["0", "1", "2", "-1", "-0", "1e3", "999999999999", "3.5", "0x10",
                                  "", " ", "nan", "inf", "1_000", "١٢"]),
                 st.integers(-10, 10).map(str))
FLOATS = st.one_of(st.sampled_from(["0", "0.1", "-0.1", "1e-9", "1e308", "1e999", "nan", "inf",
                                    "-inf", "abc", "", "0,1", "1/2"]),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr))
MODELS = st.sampled_from(["resnet20", "plain20", "resnet18", "googlenet_small", "googlenet",
                          "googlenet_tv", "resnet1202", "RESNET20", "resnet", "", "ResNet-20",
                          "rèsnet20", "--json", "-1"])
TRAIN_MODELS = st.sampled_from(["resnet20", "plain20", "googlenet_small", "resnet18", "RESNET20",
                                "resnet", "", "rèsnet20", "--json", "-1"])
SMALL_MODELS = st.sampled_from(["resnet20", "plain20", "googlenet_small", "nope", "", "résnet"])
SIZES = st.one_of(st.sampled_from(["3,32,32", "1,8,8", "3,8,8", "3,1,1", "0,8,8", "3,-8,8",
                                   "3,32", "3,32,32,32", "a,b,c", "3, 32, 32", "", "3,32,32,"]),
                  st.tuples(st.integers(-1, 4), st.integers(-1, 40), st.integers(-1, 40)).map(
                      lambda t: ",".join(map(str, t))))
JUNK = st.sampled_from(["--frobnicate", "-x", "--json=1", "--", "-", "--help-me", "é", "--eta",
                        "--no-such"])


def good_or(sandbox: Path, name: str):
    """Half the time the good file, else any path."""
    return st.one_of(st.just(str(sandbox / name)), paths(sandbox))


def paths(sandbox: Path):
    names = ["run", "run/checkpoints/last.pt", "run/checkpoints/best.pt", "empty-dir", "text.txt",
             "not-a-checkpoint.pt", "img.png", "ünï cødé ✓.png", "bad.png", "missing",
             "missing/deeper.pt", "", ".", "/", "/dev/null", "run/metrics.jsonl"]
    return st.one_of(st.sampled_from(names), ODD).map(
        lambda n: n if n.startswith("/") else str(sandbox / n) if n else n)


def flags(*pairs, most: int = 4):
    """Up to ``most`` of the given flags (each with a generated value), in any order."""
    def piece(pair):
        f, v = pair
        return v.map(lambda x: [f, x]) if v is not None else st.just([f])

    return st.lists(st.sampled_from(pairs), max_size=most, unique_by=lambda p: p[0]).flatmap(
        lambda chosen: st.tuples(*map(piece, chosen))).map(lambda groups: [a for g in groups for a in g])


def with_junk(args):
    return st.tuples(args, st.lists(JUNK, max_size=1)).map(lambda t: t[0] + t[1])


# --- the tests, one per sub-command ----------------------------------------------------------

N = {"experiment": 30, "reproduce": 20, "models": 4, "summary": 60, "inception-cost": 10, "train": 120, "train-toml": 120,
     "eval": 80, "bench": 50, "export": 50, "predict": 80, "top-level": 40}
SCALE = [1, pytest.param(8, marks=pytest.mark.slow, id="x8-slow")]


def _record(log, name, counts, scale=1):
    key = f"cli fuzz: {name}" + (f" (x{scale}, slow)" if scale != 1 else "")
    log[key] = f"{sum(counts.values())} cases " + str(dict(sorted(counts.items())))


def test_all_subcommands_are_covered():
    from cnnarch.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(getattr(a, "choices", None), dict))
    missing = set(sub.choices) - set(N)
    assert not missing, f"sub-commands without a fuzz test: {missing}"


@pytest.mark.parametrize("scale", SCALE)
def test_fuzz_top_level(cli, bounded, reliability_log, scale):
    counts: dict = {}

    @settings(derandomize=scale == 1, max_examples=N["top-level"] * scale, **SETTINGS)
    @given(st.lists(st.one_of(JUNK, ODD, st.sampled_from(["--help", "--version", "help", "trian",
                                                          "-h", "models"])), max_size=3))
    def case(argv):
        check(cli, argv, counts)

    case()
    _record(reliability_log, "top-level", counts, scale)


@pytest.mark.parametrize("scale", SCALE)
def test_fuzz_models_summary_inception(cli, bounded, reliability_log, scale):
    counts: dict = {}

    @settings(derandomize=scale == 1, max_examples=N["models"] * scale, **SETTINGS)
    @given(with_junk(flags(("--json", None))))
    def models(args):
        check(cli, ["models", *args], counts)

    @settings(derandomize=scale == 1, max_examples=N["summary"] * scale, **SETTINGS)
    @given(MODELS, with_junk(flags(("--input-size", SIZES), ("--json", None),
                                   ("--compare", st.sampled_from(["paper", "Paper", ""])),
                                   ("--inception", st.sampled_from(["naive", "bottleneck", "x"])),
                                   ("--stride-at", st.sampled_from(["3x3", "1x1", "2x2"])),
                                   ("--aux", None))))
    def summary(model, args):
        check(cli, ["summary", model, *args], counts)

    @settings(derandomize=scale == 1, max_examples=N["inception-cost"] * scale, **SETTINGS)
    @given(with_junk(flags(("--json", None), ("--network", MODELS))))
    def inception(args):
        check(cli, ["inception-cost", *args], counts)

    models()
    summary()
    inception()
    _record(reliability_log, "models + summary + inception-cost", counts, scale)


DATA = st.sampled_from(["digits", "synthetic:1x8x8:4:64", "synthetic:3x8x8:3:16", "synthetic",
                        "synthetic:1x8x8:0:16", "synthetic:0x8x8:2:16", "synthetic:1x8:2:16",
                        "synthetic:1x8x8:2:2", "cifar10", "cifar100", "imagenet", "",
                        "imagefolder:", "imagefolder:/nonexistent", "DIGITS"])


def train_flags(sandbox):
    return flags(("--data", DATA), ("--epochs", INTS), ("--iterations", INTS),
                 ("--batch-size", st.sampled_from(["16", "64", "0", "-3", "100000", "x", "1e2"])),
                 ("--lr", FLOATS), ("--momentum", FLOATS), ("--weight-decay", FLOATS),
                 ("--optimizer", st.sampled_from(["sgd", "adamw", "adam", "SGD"])),
                 ("--schedule", st.sampled_from(["cosine", "step", "constant", "linear"])),
                 ("--milestones", st.sampled_from(["1,2", "-1", "a", "", "1.5"])),
                 ("--precision", st.sampled_from(["auto", "fp32", "bf16", "fp16", "fp8"])),
                 ("--channels-last", st.sampled_from(["on", "off", "auto", "yes"])),
                 ("--device", st.sampled_from(["cpu", "cuda", "cuda:7", "mps", "tpu", "cuda:x"])),
                 ("--seed", INTS), ("--label-smoothing", FLOATS), ("--warmup-epochs", FLOATS),
                 ("--recipe", st.sampled_from(["paper-cifar", "cosine", "paper-imagenet", "x"])),
                 ("--set", st.sampled_from(["log_every=1", "eval_every=0", "nope=1", "lr", "=",
                                            "model_kwargs={}", "milestones=[1]", "quiet=maybe"])),
                 ("--model-kwargs", st.sampled_from(['{"shortcut": "B"}', '{"bogus": 1}', "{",
                                                     "[]", '{"num_classes": 3}'])),
                 ("--shortcut", st.sampled_from(["A", "B", "C", "none", "D"])),
                 ("--norm", st.sampled_from(["bn", "none", "lrn", "ln"])),
                 ("--out", paths(sandbox)), ("--resume", paths(sandbox)),
                 ("--data-dir", paths(sandbox)), ("--download", None), ("--val-split", None),
                 ("--compile", None), ("--json", None), ("--no-quiet", None),
                 ("--config", paths(sandbox)))


@pytest.mark.parametrize("scale", SCALE)
def test_fuzz_train(cli, bounded, reliability_log, scale):
    counts: dict = {}

    @settings(derandomize=scale == 1, max_examples=N["train"] * scale, **SETTINGS)
    @given(st.one_of(st.just([]), TRAIN_MODELS.map(lambda m: [m])), with_junk(train_flags(bounded)))
    def case(model, args):
        check(cli, ["train", *model, *args], counts)

    case()
    _record(reliability_log, "train", counts, scale)


# TOML values of every type, and keys: real fields, near misses, junk, unicode.
from cnnarch.train.config import FIELD_NAMES  # noqa: E402

TOML_SCALARS = st.one_of(st.integers(-10**20, 10**20), st.floats(), st.booleans(),
                         st.text(max_size=8), st.sampled_from(["resnet20", "digits", "sgd", "cpu"]))
TOML_VALUES = st.recursive(TOML_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=3)),
    max_leaves=5)
TOML_KEYS = st.one_of(st.sampled_from(FIELD_NAMES), st.sampled_from(["epoch", "lr_", "Model", "ëpochs",
                                                                     "batch-size", "[x]"]))


def _toml_key(k: str) -> str:
    import json

    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k)


def _toml(v) -> str:
    import json
    import math

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml(x)}" for k, x in v.items()) + "}"


def toml_text():
    valid = st.dictionaries(TOML_KEYS, TOML_VALUES, max_size=5).map(
        lambda d: "".join(f"{_toml_key(k)} = {_toml(v)}\n" for k, v in d.items()))
    tiny = st.just('model = "resnet20"\ndata = "synthetic:1x8x8:4:64"\nbatch_size = 16\n'
                   'iterations = 1\n')
    broken = st.sampled_from(["epochs = = 3", "[train\nlr=1", "lr = 0.1\nlr = 0.2", "\x00", "ä = 1",
                              'model = """', "epochs = 3\n[model_kwargs]\nshortcut = 'Z'"])
    return st.one_of(valid, st.tuples(tiny, valid).map("".join), broken,
                     st.binary(max_size=30).map(lambda b: b.decode("latin-1")))


@pytest.mark.parametrize("scale", SCALE)
def test_fuzz_train_toml(cli, bounded, reliability_log, scale):
    counts: dict = {}
    cfg = bounded / "fuzz.toml"

    @settings(derandomize=scale == 1, max_examples=N["train-toml"] * scale, **SETTINGS)
    @given(toml_text(), st.one_of(st.just([]), SMALL_MODELS.map(lambda m: [m])),
           flags(("--iterations", st.sampled_from(["1", "0", "x"])),
                 ("--out", st.sampled_from(["runs/a", "runs/ü ✓", ""]))))
    def case(text, model, args):
        cfg.write_text(text, encoding="utf-8", errors="surrogateescape")
        check(cli, ["train", *model, "--config", str(cfg), *args], counts)

    case()
    _record(reliability_log, "train --config TOML", counts, scale)


@pytest.mark.parametrize("scale", SCALE)
def test_fuzz_eval(cli, bounded, reliability_log, scale):
    counts: dict = {}

    @settings(derandomize=scale == 1, max_examples=N["eval"] * scale, **SETTINGS)
    @given(good_or(bounded, "run"), with_junk(flags(("--best", None), ("--data", DATA),
                                           ("--data-dir", paths(bounded)), ("--download", None),
                                           ("--val-split", None), ("--batch-size", INTS),
                                           ("--device", st.sampled_from(["cpu", "cuda", "auto", "x"])),
                                           ("--json", None))))
    def case(ckpt, args):
        check(cli, ["eval", ckpt, *args], counts)

    case()
    _record(reliability_log, "eval", counts, scale)


@pytest.mark.parametrize("scale", SCALE)
def test_fuzz_bench(cli, bounded, reliability_log, scale):
    counts: dict = {}

    @settings(derandomize=scale == 1, max_examples=N["bench"] * scale, **SETTINGS)
    @given(SMALL_MODELS, with_junk(flags(
        ("--mode", st.sampled_from(["infer", "train", "both"])), ("--batch", INTS),
        ("--input-size", SIZES), ("--precision", st.sampled_from(["auto", "fp32", "bf16", "fp16"])),
        ("--compile", None), ("--no-channels-last", None), ("--no-fold-bn", None),
        ("--repeats", INTS), ("--device", st.sampled_from(["cpu", "cuda", "auto", "cuda:0", "x"])),
        ("--json", None))))
    def case(model, args):
        check(cli, ["bench", model, *args], counts)

    case()
    _record(reliability_log, "bench", counts, scale)


@pytest.mark.parametrize("scale", SCALE)
def test_fuzz_export(cli, bounded, reliability_log, scale):
    counts: dict = {}

    @settings(derandomize=scale == 1, max_examples=N["export"] * scale, **SETTINGS)
    @given(good_or(bounded, "run"), st.one_of(st.just([]), paths(bounded).map(lambda p: ["--onnx", p]),
                                     st.sampled_from(["m.onnx", "ü ✓.onnx", "missing/m.onnx"]).map(
                                         lambda n: ["--onnx", str(bounded / n)])),
           with_junk(flags(("--opset", INTS), ("--json", None))))
    def case(ckpt, onnx, args):
        check(cli, ["export", ckpt, *onnx, *args], counts)

    case()
    _record(reliability_log, "export", counts, scale)


@pytest.mark.parametrize("scale", SCALE)
def test_fuzz_predict(cli, bounded, reliability_log, scale):
    counts: dict = {}

    @settings(derandomize=scale == 1, max_examples=N["predict"] * scale, **SETTINGS)
    @given(good_or(bounded, "run"), st.lists(good_or(bounded, "img.png"), max_size=3),
           with_junk(flags(("--top-k", INTS), ("--device", st.sampled_from(["cpu", "cuda", "x"])),
                           ("--json", None))))
    def case(ckpt, images, args):
        check(cli, ["predict", ckpt, *images, *args], counts)

    case()
    _record(reliability_log, "predict", counts, scale)


@pytest.fixture
def cheap_experiments(monkeypatch, bounded):
    """CI: ``reproduce`` is a sentinel ("accepted": argparse and the CLI's checks passed).
    Slow variant: it runs for real, but only the analysis-only inception-cost experiment
    (the training experiments take minutes); argument checks are unchanged."""
    import importlib

    mod = importlib.import_module("cnnarch.experiments.reproduce")
    real = mod.reproduce

    def arm(run_real: bool):
        def cheap(scale="quick", data="digits", out="reports/latest", **kw):
            if not run_real:
                raise Accepted()
            return real(scale, data, out, **{**kw, "only": ["inception-cost"]})

        monkeypatch.setattr(mod, "reproduce", cheap)
        if hasattr(mod, "choose_threads"):
            monkeypatch.setattr(mod, "choose_threads", lambda *a, **k: {})
        return bounded

    return arm


@pytest.mark.parametrize("scale", SCALE)
def test_fuzz_experiment_reproduce(cli, cheap_experiments, reliability_log, scale):
    counts: dict = {}
    sandbox = cheap_experiments(run_real=scale != 1)
    common = flags(("--scale", st.sampled_from(["quick", "full", "QUICK", ""])), ("--data", DATA),
                   ("--data-dir", paths(sandbox)), ("--out", paths(sandbox)),
                   ("--seed", INTS), ("--device", st.sampled_from(["cpu", "cuda", "auto", "x"])))

    @settings(derandomize=scale == 1, max_examples=N["experiment"], **SETTINGS)
    @given(st.sampled_from(["inception-cost", "degradation", "residuals", "aux-heads", "nope", ""]),
           with_junk(common))
    def experiment(name, args):
        check(cli, ["experiment", name, *args], counts)

    @settings(derandomize=scale == 1, max_examples=N["reproduce"], **SETTINGS)
    @given(with_junk(common))
    def reproduce(args):
        check(cli, ["reproduce", *args], counts)

    experiment()
    reproduce()
    name = "experiment + reproduce" + (" (inception-cost only)" if scale != 1 else " (stubbed)")
    _record(reliability_log, name, counts, scale)


# --- found by the fuzzer, kept as plain regression cases ------------------------------------

@pytest.mark.parametrize("device", ["x", "cuda:x", "tpu", "cuda", "cuda:7"])
@pytest.mark.parametrize("command", ["eval", "predict", "train"])
def test_bad_device_is_one_line(cli, user_error, tiny_run, tmp_path, command, device):
    import torch

    if device.startswith("cuda") and ":x" not in device and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("L", (8, 8)).save(image)
    argv = {"eval": ["eval", str(tiny_run), "--device", device],
            "predict": ["predict", str(tiny_run), str(image), "--device", device],
            "train": ["train", "resnet20", *_h.TINY_ARGS[:-5], "--device", device, "--out",
                      str(tmp_path / "run")]}[command]
    user_error(cli(argv), "device")


@pytest.mark.parametrize("value", ["1e308", "1e39", "-1e308"])
@pytest.mark.parametrize("flag", ["--lr", "--weight-decay", "--warmup-epochs", "--momentum",
                                  "--gamma", "--label-smoothing"])
def test_huge_float_settings_are_one_line(cli, user_error, tmp_path, flag, value):
    """Found by the x8 fuzz: --lr 1e308 overflowed inside the optimizer (traceback)."""
    user_error(cli(["train", "resnet20", *_h.TINY_ARGS, flag, value, "--out", str(tmp_path / "r")]))


def test_bench_bad_device_is_one_line(cli, user_error):
    user_error(cli(["bench", "resnet20", "--device", "x"]), "device")
