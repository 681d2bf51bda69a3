"""What `cnnarch eval` prints: CheckpointEvaluation renders its metrics."""

from cnnarch.inference.api import CheckpointEvaluation


def _metrics(classes, confusion):
    n = sum(map(sum, confusion))
    hits = sum(confusion[i][i] for i in range(len(classes)))
    return {"split": "test", "n": n, "top1": hits / n, "top5": 1.0, "loss": 0.5,
            "classes": classes, "per_class": [row[i] / sum(row) for i, row in enumerate(confusion)],
            "confusion": confusion}


def test_three_classes_no_top5_and_a_labelled_confusion_matrix():
    result = CheckpointEvaluation("run/last.pt", "resnet20", "imagefolder:shapes",
                                  _metrics(["circle", "square", "triangle"],
                                           [[5, 0, 0], [1, 3, 1], [0, 0, 120]]))
    lines = result.render().splitlines()
    assert lines[0] == ("resnet20 (run/last.pt) on imagefolder:shapes test (130 images): "
                        "top-1 98.46%  loss 0.5000")  # top-5 of 3 classes says nothing
    at = lines.index("confusion matrix (rows = true class, columns = predicted):")
    head, *rows = lines[at + 1:]
    assert head.split() == ["circle", "square", "triangle"]
    assert [r.split() for r in rows] == [["circle", "5", "0", "0"], ["square", "1", "3", "1"],
                                         ["triangle", "0", "0", "120"]]
    ends = {len(r) for r in [head, *rows]}
    assert len(ends) == 1  # the columns line up under their labels


def test_ten_classes_show_top5_and_json_carries_the_fast_path():
    confusion = [[9 if i == j else 0 for j in range(10)] for i in range(10)]
    fast = {"precision": "int8", "n": 90, "top1_agreement": 1.0, "fp32_top1": 1.0,
            "fast_top1": 1.0, "top1_change": 0.0}
    result = CheckpointEvaluation("x.pt", "resnet20", "digits",
                                  _metrics([str(i) for i in range(10)], confusion), fast)
    text = result.render()
    assert "top-5 100.00%" in text and "fast path int8: top-1 100.00% vs fp32 100.00%" in text
    d = result.to_dict()
    assert d["fast_path"] == fast and d["n"] == 90 and d["checkpoint"] == "x.pt"


def _shapes(root):
    from PIL import Image

    for c, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (12, 12), tuple(v + 3 * i for v in colour)).save(root / f"c{c}" / f"{i}.png")
    return root


def test_eval_uses_the_checkpoints_transform_not_one_estimated_again(tmp_path, monkeypatch):
    """predict and eval see an image the same way: through the transform stored at training,
    even when the folder's statistics have moved since (here: estimated differently)."""
    import pytest

    from cnnarch.data.imagefolder import ImageFolderData
    from cnnarch.data.transform import EvalTransform
    from cnnarch.errors import UserError
    from cnnarch.inference import api
    from cnnarch.train import TrainConfig, load_model, train

    data = _shapes(tmp_path / "shapes")
    train(TrainConfig(model="resnet20", data=f"imagefolder:{data}", epochs=1, batch_size=8,
                      warmup_epochs=0.0, workers=0, device="cpu", quiet=True,
                      out=str(tmp_path / "run")))
    stored = EvalTransform.from_meta(load_model(tmp_path / "run")[1])
    seen = {}

    def spy(model, dataset, **kw):
        seen["transform"] = dataset.eval_transform
        return {"loss": 0.0}

    monkeypatch.setattr("cnnarch.train.evaluate", spy)
    monkeypatch.setattr(ImageFolderData, "_estimate_stats", lambda self: ((0.9,) * 3, (0.05,) * 3))
    api.evaluate_checkpoint(tmp_path / "run")
    assert seen["transform"] == stored and stored.mean != (0.9,) * 3
    (data / "c2").rename(data / "c9")  # another class name: not the data it was trained on
    with pytest.raises(UserError, match="classes"):
        api.evaluate_checkpoint(tmp_path / "run")
