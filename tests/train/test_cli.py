import json

import pytest

from cnnarch.cli import main

QUICK = ["--batch-size", "256", "--warmup-epochs", "0", "--quiet"]


@pytest.mark.parametrize("argv, match", [
    (["train", "resnet20", "--lr", "-1"], "lr"),
    (["train", "resnet20", "--batch-size", "0"], "batch_size"),
    (["train", "resnet20", "--lr", "abc"], "number"),
    (["train", "resnet20", "--epochs", "two"], "integer"),
    (["train", "resnet20", "--set", "learning_rate=0.1"], "unknown key 'learning_rate'"),
    (["train", "resnet20", "--set", "lr"], "KEY=VALUE"),
    (["train", "resnet2O"], "unknown model"),
    (["train", "resnet20", "--recipe", "fast"], "paper-cifar"),
    (["train", "resnet20", "--shortcut", "D"], "invalid choice"),
    (["train", "plain20", "--shortcut", "B"], "no option 'shortcut'"),
    (["train", "resnet20", "--model-kwargs", "{bad json"], "model_kwargs"),
    (["train", "resnet20", "--data", "cifar10", "--data-dir", "/nonexistent/x"], "--download"),
    (["train", "resnet20", "--data", "imagenet"], "unknown dataset"),
    (["train", "--config", "/nonexistent/c.toml"], "not found"),
    (["train"], "MODEL"),
    (["eval", "/nonexistent/run"], "not found"),
])
def test_bad_input_exits_2_with_one_line(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))


def test_config_typo_in_toml_exits_2(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "resnet20"\nbatch_sise = 64\n')
    assert main(["train", "--config", str(cfg)]) == 2
    assert "batch_sise" in capsys.readouterr().err


def test_train_then_eval_json(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "resnet20", "--data", "digits", "--epochs", "1", "--out", str(out), *QUICK]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "resnet20" and result["n"] == 360
    assert 0 <= result["top1"] <= result["top5"] <= 1
    assert len(result["per_class"]) == 10 and len(result["confusion"]) == 10
    assert main(["eval", str(out / "checkpoints" / "best.pt")]) == 0
    assert "confusion matrix" in capsys.readouterr().out
    # a checkpoint from another dataset shape is refused (digits: 1 channel; synthetic: 3)
    assert main(["eval", str(out), "--data", "synthetic:3x8x8:10:16"]) == 2


def test_eval_reports_the_fast_paths_accuracy_cost(tmp_path, capsys):
    from cnnarch.export import bf16_supported
    from cnnarch.quantize import int8_available

    out = tmp_path / "run"
    assert main(["train", "resnet20", "--data", "digits", "--epochs", "2", "--out", str(out), *QUICK]) == 0
    precision = "int8" if int8_available() is None else "bf16" if bf16_supported() else None
    if precision is None:
        pytest.skip("neither int8 (torchao) nor native bf16 here")
    capsys.readouterr()
    assert main(["eval", str(out), "--json", "--precision", precision]) == 0
    result = json.loads(capsys.readouterr().out)
    fast = result["fast_path"]
    assert fast["precision"] == precision and fast["n"] == result["n"] == 360
    assert fast["fp32_top1"] == pytest.approx(result["top1"])  # the same model, the same split
    assert 0.9 <= fast["top1_agreement"] <= 1
    assert main(["eval", str(out), "--precision", "fp16", "--device", "cpu"]) == 2  # fp16: CUDA only
    assert "CUDA" in capsys.readouterr().err


def test_flags_toml_and_resume_set_the_same_fields(tmp_path, capsys):
    from cnnarch.train.config import load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "plain20"\nlr = 0.05\nweight_decay = 0.0001\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--lr", "0.02", "--iterations", "2", "--out", str(out),
                 "--set", "label_smoothing=0.1", "--no-nesterov", *QUICK]) == 0
    saved = load_config(out / "config.toml")
    assert saved.model == "plain20" and saved.lr == 0.02 and saved.weight_decay == 1e-4
    assert saved.label_smoothing == 0.1 and saved.iterations == 2 and saved.resume is None
    # resume continues the same run, more iterations; a different model is refused
    assert main(["train", "--resume", str(out), "--iterations", "4", "--quiet"]) == 0
    assert load_config(out / "config.toml").iterations == 4
    assert main(["train", "resnet20", "--resume", str(out)]) == 2


def test_model_options_reach_the_model(tmp_path):
    from cnnarch.train.checkpoint import load_model

    out = tmp_path / "run"
    assert main(["train", "resnet20", "--shortcut", "B", "--iterations", "1", "--out", str(out), *QUICK]) == 0
    model, meta = load_model(out)
    assert meta["model_kwargs"] == {"shortcut": "B"}
    assert model.layer2[0].downsample is not None and hasattr(model.layer2[0].downsample, "__getitem__")


def test_non_finite_loss_exits_1_naming_the_step(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "resnet20", "--lr", "1e30", "--iterations", "5", "--out", str(out), *QUICK]) == 1
    err = capsys.readouterr().err
    assert "non-finite loss at step" in err


def test_googlenet_on_8x8_fails_before_the_run_folder_and_names_the_small_one(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "googlenet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "googlenet_small" in err and "1x8x8" in err, err
    assert not out.exists()


def test_final_line_wording_for_few_classes(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "resnet20", "--data", "synthetic:1x8x8:3:64", "--batch-size", "16",
                 "--epochs", "1", "--out", str(out), *QUICK[2:]]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "1 epoch in" in line and "top-5" not in line and "accuracy" in line, line


@pytest.mark.slow
def test_image_folder_trains_with_the_defaults(capsys, tmp_path):
    """60 PNGs of 32 x 32 in 3 classes: no flag needed (batch fitted to the split, native size,
    a validation split), and the run says so."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "shapes" / f"c{c}").mkdir(parents=True)
        for i in range(20):
            a = np.full((32, 32, 3), 60 * c, np.uint8) + rng.integers(0, 40, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(a).save(tmp_path / "shapes" / f"c{c}" / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "resnet18", "--data", f"imagefolder:{tmp_path / 'shapes'}", "--epochs", "2",
                 "--workers", "0", "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "larger than the training split (42 images); using 42" in captured.err
    from cnnarch.train.checkpoint import load_checkpoint

    meta = load_checkpoint(out)["meta"]
    assert meta["input_size"] == [3, 32, 32] and meta["eval_split"] == "val"
    assert meta["transform"]["resize"] == 36
