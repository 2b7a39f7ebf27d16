"""Rotated digits: determinism, exact 90-degree rotations, balanced nested splits, clear errors."""

import pytest
import torch

from gdl.data import RandomRotation, digit_images, random_angles, rotate_images, rotated_digits


def test_digit_images_are_centred_and_uncropped():
    x, y = digit_images(size=20, content=14)
    assert x.shape == (1797, 1, 20, 20) and y.shape == (1797,)
    assert x.min() >= 0 and x.max() <= 1 and set(y.tolist()) == set(range(10))
    assert x[..., :3, :].abs().max() == 0 and x[..., :, -3:].abs().max() == 0     # zero border
    # a 45-degree turn keeps (almost all) the ink on the canvas
    mass = rotate_images(x[:100], 45.0).sum() / x[:100].sum()
    assert abs(float(mass) - 1) < 0.02


def test_quarter_turns_are_exact_and_match_rot90():
    x, _ = digit_images()
    for k in range(4):
        assert torch.equal(rotate_images(x[:8], 90.0 * k), torch.rot90(x[:8], k, dims=(-2, -1)))
    # bilinear rotation by almost 90 degrees approaches the exact one (same direction convention)
    close = rotate_images(x[:8].double(), 89.999)
    assert (close - torch.rot90(x[:8].double(), 1, dims=(-2, -1))).abs().max() < 1e-3
    # composition: two 30-degree turns are close to one 60-degree turn (interpolation error only: about 6 % of
    # the mean ink), and far from a single 30-degree turn (about 63 %), so the bound can tell them apart
    twice = rotate_images(rotate_images(x[:8], 30.0), 30.0)

    def rel(a, b):
        return float((a - b).abs().mean() / x[:8].abs().mean())

    assert rel(twice, rotate_images(x[:8], 60.0)) < 0.1
    assert rel(twice, rotate_images(x[:8], 30.0)) > 0.4


def test_one_image_rotation_for_the_whole_package():
    """rotate_images resamples with gdl.groups.RotateImageAction (the package's one image rotation)."""
    import math

    from gdl.groups import SO2, RotateImageAction

    x, _ = digit_images()
    so2 = SO2()
    for angle in (33.0, 200.0):
        expected = RotateImageAction(so2)(so2.element(math.radians(angle)), x[:5])
        assert torch.equal(rotate_images(x[:5], angle), expected)


def test_per_image_angles():
    x, _ = digit_images()
    angles = torch.tensor([0.0, 90.0, 180.0, 33.0])
    out = rotate_images(x[:4], angles)
    assert torch.equal(out[2], torch.rot90(x[2], 2, dims=(-2, -1)))
    assert torch.equal(out[3], rotate_images(x[3:4], 33.0)[0])


def test_split_is_seeded_balanced_and_nested():
    a, b = rotated_digits(50, 200, seed=3), rotated_digits(50, 200, seed=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert torch.bincount(a.y_train, minlength=10).tolist() == [5] * 10
    big = rotated_digits(120, 200, seed=3)
    assert torch.equal(big.x_train[:50], a.x_train) and torch.equal(big.x_test, a.x_test)
    other = rotated_digits(50, 200, seed=4)
    assert not torch.equal(other.x_train, a.x_train)
    upright = rotated_digits(30, 100, rotation="none", test_rotation="c4", seed=0)
    x, _ = digit_images()
    assert any(torch.equal(upright.x_train[0], xi) for xi in x)
    assert a.x_val is None and "val" not in repr(a)


def test_validation_split_is_disjoint_and_rotated_like_training():
    x, _ = digit_images(8, 8, rotation="c4")
    split = rotated_digits(100, 200, n_val=150, rotation="none", test_rotation="c4", size=8, content=8, seed=1)
    assert split.x_val.shape == (150, 1, 8, 8) and split.y_val.shape == (150,) and "val=(150, 1, 8, 8)" in repr(split)

    def rows(images):                       # index of every image in the unrotated pool (upright: exact match)
        flat = x.flatten(1)
        return {int(torch.nonzero((flat == img.flatten()).all(1))[0]) for img in images}

    train, val = rows(split.x_train), rows(split.x_val)
    assert len(train) == 100 and len(val) == 150 and not train & val
    # the test set does not depend on n_val, and n_val=0 leaves the old split unchanged
    assert torch.equal(split.x_test, rotated_digits(100, 200, rotation="none", test_rotation="c4", size=8, content=8,
                                                    seed=1).x_test)
    assert torch.equal(rotated_digits(50, 200, n_val=0, seed=3).x_train, rotated_digits(50, 200, seed=3).x_train)


def test_random_angles_and_augmentation():
    g = torch.Generator().manual_seed(0)
    assert torch.all(random_angles(50, "c4", g) % 90 == 0)
    so2 = random_angles(1000, "so2", g)
    assert so2.min() >= 0 and so2.max() < 360 and so2.std() > 90
    assert torch.all(random_angles(5, "none", g) == 0)
    x, _ = digit_images()
    aug = RandomRotation("c4")
    out = aug(x[:16], torch.Generator().manual_seed(1))
    assert out.shape == x[:16].shape and repr(aug) == "RandomRotation('c4')"
    # every image is its own quarter turn of the input, and the turns differ between images
    turns = [next(k for k in range(4) if torch.equal(out[i], torch.rot90(x[i], k, dims=(-2, -1)))) for i in range(16)]
    assert len(set(turns)) > 1, turns
    again = aug(x[:16], torch.Generator().manual_seed(1))
    assert torch.equal(again, out)                                        # seeded by the generator


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="rotation must be one of"):
        rotated_digits(10, rotation="c8")
    with pytest.raises(ValueError, match="n_train must be an integer in 1..1297"):
        rotated_digits(5000, 500)
    with pytest.raises(ValueError, match="n_test"):
        rotated_digits(10, 0)
    with pytest.raises(ValueError, match="canvas of about 20 pixels"):
        digit_images(size=16, content=14)
    with pytest.raises(ValueError, match="canvas of about 12 pixels"):
        rotated_digits(10, 10, rotation="none", test_rotation="so2", size=8, content=8)
    assert digit_images(size=8, content=8, rotation="c4")[0].shape == (1797, 1, 8, 8)   # quarter turns: any canvas
    with pytest.raises(ValueError, match="n_val must be an integer in 0..1296"):
        rotated_digits(10, 500, n_val=1297)
    with pytest.raises(ValueError, match="n_train must be an integer in 1..1197"):
        rotated_digits(1198, 500, n_val=100)
    with pytest.raises(ValueError, match="even difference"):
        digit_images(size=20, content=13)
    with pytest.raises(ValueError, match=r"square images of shape \(B, C, H, H\), got \(1, 4, 5\)"):
        rotate_images(torch.zeros(1, 4, 5), 10.0)
    with pytest.raises(ValueError, match="one angle or 2 angles"):
        rotate_images(torch.zeros(2, 1, 4, 4), torch.zeros(3))


def test_training_loop_is_seeded_and_checks_its_data():
    from gdl.nn import GCNN
    from gdl.training import accuracy, evaluate, fit, train

    split = rotated_digits(40, 40, size=12, content=8, seed=0)

    def build():
        return GCNN(1, (2,), group="p4", num_classes=10)

    a = fit(build, split.x_train, split.y_train, seed=3, epochs=2, batch_size=16, device="cpu", progress=False)
    b = fit(build, split.x_train, split.y_train, seed=3, epochs=2, batch_size=16, device="cpu", progress=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    result = evaluate(a, split.x_test, split.y_test, device="cpu")
    assert 0 <= result["accuracy"] <= 1 and result["loss"] > 0
    assert accuracy(a, split.x_test, split.y_test, device="cpu") == result["accuracy"]
    with pytest.raises(ValueError, match="same, non-zero number of samples"):
        train(build(), split.x_train, split.y_train[:5], device="cpu")


def test_learning_curve_stops_on_the_validation_loss():
    import math

    from gdl.nn import GCNN
    from gdl.training import learning_curve

    def build():
        return GCNN(1, (2,), group="p4", num_classes=10)

    def data(n, seed):
        return rotated_digits(n, 40, n_val=30, rotation="none", size=8, content=8, seed=seed)

    tests = {"upright": lambda s: (s.x_test, s.y_test),
             "turned": lambda s: (rotate_images(s.x_test, 90.0), s.y_test)}
    rows = learning_curve({"p4": (build, None), "p4 + aug": (build, RandomRotation("c4"))}, data, [12, 40], [0],
                          tests=tests, max_epochs=60, patience=3, min_patience_steps=20, lr=0.05, device="cpu",
                          progress=False)
    assert [(r["model"], r["n"], r["seed"]) for r in rows] == [
        ("p4", 12, 0), ("p4 + aug", 12, 0), ("p4", 40, 0), ("p4 + aug", 40, 0)]
    for r in rows:
        steps_per_epoch = math.ceil(r["n"] / min(64, r["n"] // 4))
        wait = max(3, math.ceil(20 / steps_per_epoch))
        # either stopped by the validation loss, exactly `wait` epochs after the best one, or by the limit
        assert r["epochs"] == r["best_epoch"] + wait or r["epochs"] == 60, r
        assert 1 <= r["best_epoch"] <= r["epochs"] and 0 <= r["upright"] <= 1 and r["train_loss"] > 0
        if r["model"] == "p4":          # invariant to quarter turns: the same predictions on turned digits
            assert r["upright"] == r["turned"], r
    assert any(r["epochs"] < 60 for r in rows), rows          # early stopping did stop some runs
    # without a validation set every run takes max_epochs, and the default test set is called "accuracy"
    plain = learning_curve({"p4": (build, None)}, lambda n, s: rotated_digits(n, 20, size=12, content=8, seed=s),
                           [10], [0], max_epochs=3, device="cpu", progress=False)
    assert plain[0]["epochs"] == 3 and plain[0]["best_epoch"] == 3 and 0 <= plain[0]["accuracy"] <= 1
    with pytest.raises(ValueError, match="max_epochs and patience must be positive"):
        learning_curve({"p4": (build, None)}, data, [10], [0], max_epochs=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotate_images_with_one_angle_per_image_equals_rotating_each_alone(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(9, 2, 12, 12, dtype=dtype, generator=g)
    angles = torch.tensor([17.5, 90.0, -3.0, 17.5, 180.0, 359.0, 45.0, -270.0, 0.25], dtype=torch.float64)
    together = rotate_images(x, angles)                         # quarter turns by rot90, the rest in one resampling
    for i in range(len(x)):
        alone = rotate_images(x[i:i + 1], float(angles[i]))
        assert torch.equal(together[i:i + 1], alone), (i, float(angles[i]))
