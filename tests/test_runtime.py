"""gdl's run-time settings: device choice, experiment scale, seeding."""

import pytest
import torch

import gdl


def test_scale_defaults_to_small(monkeypatch):
    monkeypatch.delenv("GDL_SCALE", raising=False)
    assert gdl.scale() == "small"
    assert gdl.scaled(small=1, full=2) == 1


def test_full_scale(monkeypatch):
    monkeypatch.setenv("GDL_SCALE", "full")
    assert gdl.scaled(small=1, full=2) == 2


def test_bad_scale_names_the_allowed_values(monkeypatch):
    monkeypatch.setenv("GDL_SCALE", "huge")
    with pytest.raises(ValueError, match=r"GDL_SCALE='huge'.*'small', 'full'"):
        gdl.scale()


def test_device_prints_its_choice(capsys, monkeypatch):
    monkeypatch.delenv("GDL_DEVICE", raising=False)
    dev = gdl.device()
    assert isinstance(dev, torch.device)
    assert f"using device {dev.type}" in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert dev.type in ("cpu", "mps")


def test_device_can_be_forced_and_is_quiet(capsys, monkeypatch):
    monkeypatch.setenv("GDL_DEVICE", "cpu")
    assert gdl.device(verbose=False) == torch.device("cpu")
    assert capsys.readouterr().out == ""


def test_seed_everything_reproduces():
    gdl.seed_everything(3)
    a = torch.randn(4)
    gdl.seed_everything(3)
    assert torch.equal(a, torch.randn(4))


def test_stopwatch_reports_time_scale_and_device(monkeypatch):
    monkeypatch.setenv("GDL_SCALE", "full")
    monkeypatch.setenv("GDL_DEVICE", "cpu")
    clock = iter([100.0, 101.5, 100.0 + 83.2])
    monkeypatch.setattr(gdl._runtime.time, "perf_counter", lambda: next(clock))
    watch = gdl.Stopwatch()
    assert watch.seconds == 1.5
    assert str(watch) == "wall time 1 min 23 s (GDL_SCALE=full, device cpu)"
    assert isinstance(gdl.chapter_timer(), gdl.Stopwatch) and gdl.chapter_timer() is gdl.chapter_timer()
