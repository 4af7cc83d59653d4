import torch

from training.data.augment import augment, normalize, random_crop, random_flip


def _windows(padded: torch.Tensor, size: int) -> list[torch.Tensor]:
    span = padded.shape[-1] - size + 1
    return [padded[:, i : i + size, j : j + size] for i in range(span) for j in range(span)]


def test_crop_is_a_window_of_the_padded_image():
    x = torch.randn(16, 3, 8, 8)
    out = random_crop(x, pad=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for b in range(16):
        assert any(torch.equal(out[b], w) for w in _windows(padded[b], 8))
    assert not torch.equal(out, x)  # 16 samples all at shift 0 is vanishingly unlikely


def test_crop_without_padding_is_identity():
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(random_crop(x, pad=0), x)


def test_flip_mirrors_about_half_the_batch():
    x = torch.randn(400, 3, 4, 4)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, f) for o, f in zip(out, x.flip(3), strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    assert bool((flipped | kept).all())
    assert 150 < int(flipped.sum()) < 250


def test_augment_keeps_shape_dtype_and_is_seeded():
    x = torch.randn(8, 3, 32, 32)
    a = augment(x, 4, True, torch.Generator().manual_seed(3))
    b = augment(x, 4, True, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(a, b)


def test_normalize_uses_the_zero_to_one_scale():
    images = torch.full((2, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(images, torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.5, 1.0]))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))


def test_alternate_flip_shows_each_image_both_ways_every_two_epochs():
    from training.data.augment import alternate_flip, flip_parity

    x = torch.randn(64, 3, 4, 4)
    index = torch.arange(100, 164)
    even, odd = alternate_flip(x, index, 0, seed=0), alternate_flip(x, index, 1, seed=0)
    for i in range(64):
        views = {bool(torch.equal(v[i], x[i].flip(2))) for v in (even, odd)}
        assert views == {True, False}  # flipped in exactly one of the two epochs
    parity = flip_parity(index, seed=0)
    assert 20 < int(parity.sum()) < 44  # about half flipped in each epoch
    assert torch.equal(parity[5:9], flip_parity(index[5:9], seed=0))  # any subset, same bits
