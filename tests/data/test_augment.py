import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnarch.data import AugmentSpec, augment_batch, load_dataset, random_crop


def test_crop_is_per_sample_and_shape_preserving():
    x = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).repeat(256, 1, 1, 1)
    out = random_crop(x, 1, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) == 9  # every one of the 3 x 3 shifts occurs: offsets are per image


def test_crop_is_a_shift_with_zero_fill():
    x = torch.randint(1, 255, (32, 3, 6, 6), dtype=torch.uint8)
    out = random_crop(x, 2, torch.Generator().manual_seed(1))
    for a, b in zip(x, out, strict=True):
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.zeros_like(a)
                src = a[:, max(0, dy):6 + min(0, dy), max(0, dx):6 + min(0, dx)]
                shifted[:, max(0, -dy):6 + min(0, -dy), max(0, -dx):6 + min(0, -dx)] = src
                found |= torch.equal(shifted, b)
        assert found


def test_digits_augmentation_never_flips():
    d = load_dataset("digits")
    assert d.aug == AugmentSpec(pad=1, flip=False)
    # an image whose left half is bright: after any +-1 shift without a flip, still left-heavy
    x = torch.zeros(500, 1, 8, 8, dtype=torch.uint8)
    x[:, :, :, :3] = 255
    out = d.augment(x, torch.Generator().manual_seed(0))
    assert bool((out[:, :, :, :4].float().sum((1, 2, 3)) > out[:, :, :, 4:].float().sum((1, 2, 3))).all())


def test_cifar_spec_flips_about_half():
    x = torch.zeros(2000, 3, 8, 8, dtype=torch.uint8)
    x[:, :, :, 0] = 255
    out = augment_batch(x, AugmentSpec(pad=0, flip=True), torch.Generator().manual_seed(0))
    flipped = (out[:, 0, 0, -1] == 255).float().mean().item()
    assert 0.45 < flipped < 0.55


def test_same_generator_state_same_augmentation():
    x = torch.randint(0, 255, (16, 3, 32, 32), dtype=torch.uint8)
    spec = AugmentSpec(pad=4, flip=True)
    a = augment_batch(x, spec, torch.Generator().manual_seed(5))
    b = augment_batch(x, spec, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       pad=st.integers(0, 4), flip=st.booleans())
def test_augment_preserves_shape_and_dtype(n, c, h, w, pad, flip):
    x = torch.randint(0, 255, (n, c, h, w), dtype=torch.uint8)
    out = augment_batch(x, AugmentSpec(pad, flip), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
