import json
import os

import pytest
import torch

from cnnarch.errors import UserError
from cnnarch.models import create_model
from cnnarch.models.reorder import reordered_view
from cnnarch.train import NonFiniteLoss, TrainConfig, evaluate, load_model, train
from cnnarch.train.checkpoint import RunLock, load_checkpoint, save_checkpoint
from cnnarch.train.logging import read_metrics

# Small and quick: resnet20 on digits, 5 steps of 256 per epoch; CPU (the exactness claims
# are for CPU; GPU kernels may be non-deterministic).
FAST = dict(model="resnet20", data="digits", batch_size=256, quiet=True, warmup_epochs=0.0, device="cpu")


def test_short_run_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    result = train(TrainConfig(epochs=2, out=str(out), **FAST))
    assert [h["epoch"] for h in result.history] == [1, 2]
    h = result.history[-1]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "img_per_s", "time_s"):
        assert key in h
    assert 0 <= h["test_acc"] <= 1 and h["img_per_s"] > 0
    assert (out / "config.toml").is_file() and (out / "checkpoints" / "last.pt").is_file()
    assert (out / "checkpoints" / "best.pt").is_file()
    assert any((out / "tensorboard").iterdir())
    records = read_metrics(out / "metrics.jsonl")
    assert [r["type"] for r in records] == ["epoch", "epoch", "final"]
    assert all(line.endswith("}") for line in (out / "metrics.jsonl").read_text().splitlines())
    state = load_checkpoint(out)
    assert {"model", "optimizer", "scaler", "schedule", "epoch", "step", "rng", "config", "meta"} <= set(state)
    assert set(state["rng"]) >= {"torch", "numpy", "python", "data"}
    model, meta = load_model(out)
    assert meta["model"] == "resnet20" and meta["in_chans"] == 1 and meta["input_size"] == [1, 8, 8]
    assert meta["classes"] == [str(i) for i in range(10)] and len(meta["mean"]) == 1
    for a, b in zip(model.state_dict().values(), result.model.state_dict().values(), strict=True):
        assert torch.equal(a, b.cpu())


def test_no_out_writes_nothing_and_calls_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []
    train(TrainConfig(iterations=3, out=None, **FAST), on_epoch_end=lambda m, r: seen.append(r["epoch"]))
    assert seen == [1] and list(tmp_path.iterdir()) == []


def _weights(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_resume_is_exact(tmp_path, precision):
    cfg = dict(FAST, epochs=3, precision=precision, seed=7)
    full = train(TrainConfig(out=str(tmp_path / "full"), **cfg))

    class Killed(Exception):
        pass

    def stop_after_first(model, record):
        if record["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        train(TrainConfig(out=str(tmp_path / "part"), **cfg), on_epoch_end=stop_after_first)
    resumed = train(TrainConfig(out=str(tmp_path / "part"), resume=str(tmp_path / "part"), **cfg))
    a, b = _weights(full.model), _weights(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ (bitwise)"
    keys = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "step")
    assert [{k: h[k] for k in keys} for h in full.history] == [{k: h[k] for k in keys} for h in resumed.history]
    m_full = [{k: r.get(k) for k in keys} for r in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    m_part = [{k: r.get(k) for k in keys} for r in read_metrics(tmp_path / "part" / "metrics.jsonl")]
    assert m_full == m_part


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(epochs=1, out=str(out), **FAST))
    before = (out / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss at step \d+ \(epoch 2") as info:
        train(TrainConfig(epochs=2, lr=1e30, out=str(out), resume=str(out), **FAST))
    assert "last.pt" in str(info.value) and "\n" not in str(info.value)
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    assert load_checkpoint(out)["epoch"] == 1
    # resuming with a lower learning rate works
    result = train(TrainConfig(epochs=2, lr=0.05, out=str(out), resume=str(out), **FAST))
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_second_writer_is_refused(tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        with pytest.raises(UserError, match=f"in use by another process \\(pid {os.getpid()}\\)"):
            train(TrainConfig(iterations=2, out=str(out), **FAST))
    assert not (out / "checkpoints").exists()


def test_fresh_run_into_a_used_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(iterations=2, out=str(out), **FAST))
    with pytest.raises(UserError, match="already holds a run"):
        train(TrainConfig(iterations=2, out=str(out), **FAST))


def test_evaluate_reports_top5_per_class_and_confusion():
    from cnnarch.data import load_dataset

    result = train(TrainConfig(epochs=1, precision="fp32", val_split=False, **FAST))  # evaluate(): fp32
    ev = evaluate(result.model, load_dataset("digits"))
    assert ev["n"] == 360 and len(ev["per_class"]) == 10 and len(ev["confusion"]) == 10
    assert sum(map(sum, ev["confusion"])) == 360 and ev["top5"] >= ev["top1"]
    assert ev["top1"] == pytest.approx(result.history[-1]["test_acc"])


def test_googlenet_aux_loss_is_used_in_training_only(tmp_path):
    result = train(TrainConfig(model="googlenet_small", data="synthetic:3x16x16:4:32", batch_size=16,
                               iterations=2, quiet=True, warmup_epochs=0.0, device="cpu"))
    assert result.history[-1]["test_acc"] is not None  # eval mode: plain logits, no aux


def test_checkpoint_with_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "cnnarch-checkpoint", "payload": Evil()}, path)
    with pytest.raises(UserError, match="refusing to load"):
        load_model(path)
    assert not marker.exists()


def test_checkpoint_for_unknown_or_other_model_is_a_clear_error(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(iterations=1, out=str(out), **FAST))
    state = load_checkpoint(out)
    state["meta"]["model"] = "resnet9999"
    save_checkpoint(tmp_path / "unknown.pt", state)
    with pytest.raises(UserError, match="resnet9999.*does not have"):
        load_model(tmp_path / "unknown.pt")
    state["meta"]["model"] = "resnet32"
    save_checkpoint(tmp_path / "other.pt", state)
    with pytest.raises(UserError, match="do not match resnet32"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "torn.pt").write_bytes((out / "checkpoints" / "last.pt").read_bytes()[:1000])
    with pytest.raises(UserError, match="corrupt"):
        load_model(tmp_path / "torn.pt")


def test_metrics_lines_are_whole_json_objects(tmp_path):
    from cnnarch.train.logging import MetricsFile

    m = MetricsFile(tmp_path / "m.jsonl")
    m.write({"a": float("nan"), "b": [1, 2]})
    m.close()
    (tmp_path / "m.jsonl").open("a").write('{"torn": ')  # a crash mid-line (never our writer)
    assert read_metrics(tmp_path / "m.jsonl") == [{"a": "nan", "b": [1, 2]}]
    assert json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])["a"] == "nan"


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_optimizer_update_is_fused_on_cpu(optimizer):
    from cnnarch.train.loop import build_optimizer

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opt = build_optimizer(TrainConfig(model="resnet20", optimizer=optimizer), model)
    assert opt.defaults["fused"] is True  # one kernel per step, not one per parameter
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(2, 3, 8, 8)).square().mean().backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def _spy_on_views(monkeypatch, *, reorder: bool = True):
    """Record every view the loop makes; ``reorder=False`` runs the model as it is instead."""
    from cnnarch.train import loop

    views = []

    def spy(model):
        views.append(reordered_view(model) if reorder else model)
        return views[-1]

    monkeypatch.setattr(loop, "reordered_view", spy)
    return views


SPEED_CASE = dict(model="resnet18", data="synthetic:3x32x32:10:32", batch_size=16, iterations=2,
                  eval_every=100, val_split=False, quiet=True, device="cpu", precision="fp32",
                  warmup_epochs=0.0)


def test_fast_options_step_the_reordered_view_and_return_the_paper_model(monkeypatch):
    views = _spy_on_views(monkeypatch)
    seen = []
    fast = train(TrainConfig(**SPEED_CASE, channels_last="on"),
                 on_epoch_end=lambda m, _: seen.append(type(m.relu))).model
    assert len(views) == 1 and isinstance(views[0].relu, torch.nn.Identity)  # what the steps ran
    assert seen == [torch.nn.ReLU] and type(fast.relu) is torch.nn.ReLU  # the paper's order
    assert all(a is b for a, b in zip(views[0].parameters(), fast.parameters(), strict=True))
    assert list(fast.state_dict()) == list(create_model("resnet18", num_classes=10).state_dict())
    _spy_on_views(monkeypatch, reorder=False)  # the same run through the paper-order model
    paper = train(TrainConfig(**SPEED_CASE, channels_last="on")).model
    for (key, a), b in zip(paper.state_dict().items(), fast.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=key)


def test_fast_options_off_run_the_reference_model(monkeypatch):
    views = _spy_on_views(monkeypatch)
    train(TrainConfig(**SPEED_CASE, channels_last="off"))
    assert views == []
