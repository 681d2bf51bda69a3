import pytest

from cnnarch.errors import UserError
from cnnarch.train.config import (
    FIELD_NAMES,
    RECIPES,
    TrainConfig,
    load_config,
    resolve_config,
    to_toml,
    tomllib,
)


def test_toml_round_trip(tmp_path):
    cfg = TrainConfig(model="plain20", model_kwargs={"norm": "bn", "zero_init_residual": True},
                      data="synthetic:3x8x8:4:32", lr=0.05, weight_decay=1e-4, milestones=[3, 7],
                      label_smoothing=0.1, out="runs/x \"quoted\" ü", quiet=True)
    text = to_toml(cfg)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path) == cfg
    data = tomllib.loads(text)
    assert "data_dir" not in data and "resume" not in data  # None fields are left out
    assert set(data) <= set(FIELD_NAMES)


def test_every_field_has_a_comment():
    text = to_toml(TrainConfig())
    for line in text.splitlines()[1:]:
        assert "  # " in line, line


@pytest.mark.parametrize("key, value, match", [
    ("lr", -0.1, "lr"), ("lr", 0, "lr"), ("batch_size", 0, "batch_size"), ("epochs", -1, "epochs"),
    ("lr", "abc", "number"), ("batch_size", "1.5", "integer"), ("optimizer", "rmsprop", "sgd, adamw"),
    ("precision", "fp8", "auto, fp32, bf16, fp16"), ("momentum", 1.5, "momentum"),
    ("compile", "maybe", "true or false"), ("lr", float("nan"), "finite"), ("model_kwargs", "[1]", "JSON"),
    ("recipe", "fast", "paper-cifar"), ("device", "tpu", "cpu, cuda"), ("milestones", "a,b", "integers"),
])
def test_bad_values_are_one_line_errors_listing_choices(key, value, match):
    with pytest.raises(UserError, match=match) as info:
        resolve_config({key: value})
    assert "\n" not in str(info.value)


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(UserError, match="unknown key 'learning_rate'.*valid keys: model, model_kwargs"):
        resolve_config({"learning_rate": 0.1})


def test_strings_from_the_command_line_are_coerced():
    cfg = resolve_config({"lr": "0.5", "batch_size": "64", "compile": "true", "milestones": "2,4",
                          "model_kwargs": '{"shortcut": "B"}'})
    assert cfg.lr == 0.5 and cfg.batch_size == 64 and cfg.compile is True
    assert cfg.milestones == [2, 4] and cfg.model_kwargs == {"shortcut": "B"}


def test_recipe_precedence_and_the_r110_warmup_rule():
    cfg = resolve_config({"model": "resnet56", "recipe": "paper-cifar"})
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size) == (0.1, 0.9, 1e-4, 128)
    assert cfg.milestones == [32000, 48000] and cfg.milestone_unit == "iteration"
    assert cfg.iterations == 64000 and cfg.warmup_until_error == 0.0
    assert resolve_config({"model": "resnet110", "recipe": "paper-cifar"}).warmup_until_error == 0.8
    # a later layer (file, then flags) beats the recipe
    cfg = resolve_config({"recipe": "paper-cifar", "lr": 0.05}, {"batch_size": 64})
    assert cfg.lr == 0.05 and cfg.batch_size == 64
    im = resolve_config({"recipe": "paper-imagenet"})
    assert im.milestones == [30, 60] and im.epochs == 90 and im.milestone_unit == "epoch"
    assert set(RECIPES) == {"paper-cifar", "paper-imagenet", "cosine"}


def test_invalid_toml_is_a_user_error(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("lr = = 1\n")
    with pytest.raises(UserError, match="invalid TOML"):
        load_config(p)
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_schedule_shapes():
    from cnnarch.train.schedule import LRSchedule

    cfg = resolve_config({"recipe": "paper-cifar"})
    s = LRSchedule.from_config(cfg, steps_per_epoch=391, total_steps=64000)
    assert s.factor(0) == 1.0 and s.factor(31999) == 1.0
    assert s.factor(32000) == pytest.approx(0.1) and s.factor(48000) == pytest.approx(0.01)
    cos = LRSchedule.from_config(resolve_config({"warmup_epochs": 1.0}), 10, 100)
    assert cos.factor(0) == pytest.approx(0.1) and cos.factor(9) == 1.0
    assert cos.factor(99) < 0.01
    r110 = LRSchedule.from_config(resolve_config({"model": "resnet110", "recipe": "paper-cifar"}), 391, 64000)
    assert r110.factor(5) == pytest.approx(0.1)  # lr 0.01 ...
    r110.observe_train_error(0.85)
    assert r110.hold_low
    r110.observe_train_error(0.79)  # ... until training error < 80 %
    assert r110.factor(5) == 1.0


class _Odd:
    def __repr__(self):
        return "<odd>"


@pytest.mark.parametrize("name", [n for n in FIELD_NAMES])
def test_every_field_names_itself_when_given_a_wrong_type(name):
    with pytest.raises(UserError, match=name) as info:
        TrainConfig(**{name: _Odd()})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("key, value", [
    ("image_size", 1_000_000), ("image_size", -1), ("workers", 10_000), ("epochs", 10**12),
    ("batch_size", 10**12), ("iterations", -1), ("eval_every", 0), ("seed", -1), ("seed", 2**64),
    ("momentum", 1.0), ("label_smoothing", 1.0), ("warmup_until_error", 1.5), ("lr", float("inf")),
    ("weight_decay", 1e39), ("gamma", 0.0), ("milestones", [-1]), ("epochs", True), ("lr", True),
])
def test_sizes_and_ranges_are_bounded(key, value):
    with pytest.raises(UserError, match=key):
        TrainConfig(**{key: value})


def test_field_help_and_choices_come_from_the_dataclass():
    from cnnarch.train.config import field_specs

    specs = {s.name: s for s in field_specs()}
    assert set(specs) == set(FIELD_NAMES) and all(s.help for s in specs.values())
    assert specs["optimizer"].choices == ("sgd", "adamw") and specs["val_split"].default is True
    assert specs["data_dir"].optional and specs["milestones"].kind is list


def test_print_config_shows_what_a_recipe_sets(capsys):
    from cnnarch.cli import main

    assert main(["train", "--recipe", "paper-cifar", "--print-config"]) == 0
    text = capsys.readouterr().out
    data = tomllib.loads(text)
    assert data["iterations"] == 64000 and data["milestones"] == [32000, 48000]
    assert data["recipe"] == "paper-cifar" and "out" not in data


def test_help_shows_defaults_and_metavars(capsys):
    from cnnarch.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--lr VALUE" not in text and "--lr X" in text and "--batch-size N" in text and "(default: 128)" in text
    assert "--optimizer {sgd,adamw}" in text and "(default: on; --no-val-split turns it off)" in text
