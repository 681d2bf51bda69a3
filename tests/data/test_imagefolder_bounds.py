"""Image folders that work with the defaults, and hostile ones that stay bounded."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from cnnarch.data import load_dataset
from cnnarch.data.imagefolder import MAX_IMAGE_SIZE, scan_folder
from cnnarch.errors import UserError


def make_folder(root, classes=3, per_class=20, size=(32, 32)):
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(a).save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.mark.parametrize("loops", [1, pytest.param(2, marks=pytest.mark.slow),
                                   pytest.param(3, marks=pytest.mark.slow)])
def test_symlink_loops_and_links_out_are_not_followed(tmp_path, loops):
    root = make_folder(tmp_path / "shapes", classes=2, per_class=10)
    outside = make_folder(tmp_path / "elsewhere", classes=1, per_class=5)
    for k in range(loops):  # loops back to the root and to a class, and a file link out
        os.symlink(root, root / "class0" / f"loop{k}")
        os.symlink(root / "class1", root / "class0" / f"sib{k}")
    os.symlink(outside / "class0" / "0.png", root / "class1" / "link.png")
    os.symlink(outside / "class0", root / "class2")  # a whole class folder that is a link
    classes, samples, skipped = scan_folder(root)
    assert classes == ["class0", "class1"] and len(samples) == 20
    assert skipped == 2 * loops + 2
    d = load_dataset(f"imagefolder:{root}", workers=0, val_split=False)
    train = {p for p, _ in d._train}
    held = {p for p, _ in d._test}
    assert not train & held and len(train) + len(held) == 20


def test_one_class_is_refused(tmp_path):
    root = make_folder(tmp_path / "one", classes=1)
    with pytest.raises(UserError, match="1 class folder.*at least 2"):
        load_dataset(f"imagefolder:{root}", workers=0)


@pytest.mark.parametrize("size", [-1, MAX_IMAGE_SIZE + 1, 1_000_000])
def test_image_size_is_bounded_before_anything_is_allocated(tmp_path, size):
    root = make_folder(tmp_path / "f", classes=2, per_class=3)
    with pytest.raises(UserError, match="image_size"):
        load_dataset(f"imagefolder:{root}", image_size=size, workers=0)


def test_defaults_native_size_val_split_and_upscale_warning(tmp_path, caplog):
    root = make_folder(tmp_path / "shapes")  # the 60 PNGs of 32 x 32 in 3 classes
    d = load_dataset(f"imagefolder:{root}", workers=0, val_split=True)
    assert d.image_size == (32, 32) and d.eval_split == "val"
    assert d.train_size + len(d._test) == 48  # 80 % of 60, of which a tenth is validation
    big = load_dataset(f"imagefolder:{root}", workers=0, image_size=224)
    with caplog.at_level(logging.WARNING, logger="cnnarch.data"):
        big.warn_if_upscaling()
    assert "upscales" in caplog.text and "32 px" in caplog.text


@pytest.mark.slow  # writing the 72-megapixel PNG takes seconds
def test_bomb_inside_a_folder_is_one_line(tmp_path):
    root = make_folder(tmp_path / "f", classes=2, per_class=4)
    Image.new("L", (9000, 8000)).save(root / "class0" / "bomb.png")
    with pytest.raises(UserError) as info:
        d = load_dataset(f"imagefolder:{root}", workers=0, val_split=False)
        for _ in d.train_batches(2):
            pass
        for _ in d.eval_batches(2):
            pass
    assert "bomb.png" in str(info.value) and "\n" not in str(info.value)


_KEEPS_WORKERS_UP = """
import sys
from cnnarch.data.imagefolder import ImageFolderData
d = ImageFolderData(sys.argv[1], image_size=8, workers=2)
KEPT = d.train_batches(2)
next(KEPT)  # the workers are up, and the generator is never closed
"""


def test_exit_with_loader_workers_still_up_does_not_wait_forever(tmp_path):
    """The workers ignore a SIGTERM from anyone else (a signal to the process group), but the
    one their own process sends while it exits ends them: without that the interpreter's exit
    waits for them forever (a test that kept an iterator alive once hung the whole suite)."""
    import subprocess
    import sys

    make_folder(tmp_path / "data", classes=2, per_class=8, size=(8, 8))
    proc = subprocess.run([sys.executable, "-c", _KEEPS_WORKERS_UP, str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


_SIGNAL_TO_ITS_GROUP = """
import signal, sys, time
from cnnarch.data.imagefolder import ImageFolderData
d = ImageFolderData(sys.argv[1], image_size=8, workers=2)
batches = d.train_batches(2)
next(batches)
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # this process acts on it at a safe point
print("ready", flush=True)
sys.stdin.readline()
print(len(list(batches)), flush=True)
"""


def test_loader_workers_are_out_of_reach_of_a_signal_to_the_process_group(tmp_path):
    """A signal to the group (Ctrl-C, ``kill -TERM -PGID``) is the main process's to act on, at
    its next safe point; its workers, in groups of their own, keep serving batches."""
    import signal
    import subprocess
    import sys

    make_folder(tmp_path / "data", classes=2, per_class=8, size=(8, 8))
    proc = subprocess.Popen([sys.executable, "-c", _SIGNAL_TO_ITS_GROUP, str(tmp_path / "data")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate("go\n", timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0 and int(out) >= 1, err[-2000:]
