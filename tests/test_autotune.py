"""algo="measure" machinery: winner choice, memory and disk cache, unwritable locations, threads.

Timings are injected (a fake timer), so no test depends on the machine's speed.
"""

import json
import os
import threading

import pytest

from fastconv import autotune


@pytest.fixture(autouse=True)
def cache_file(tmp_path, monkeypatch):
    path = tmp_path / "tune" / "autotune.json"
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", str(path))
    autotune.clear()
    yield path
    autotune.clear()


class FakeClock:
    """Each candidate advances the clock by its own fixed cost; ``calls`` records the order."""

    def __init__(self, costs):
        self.now, self.costs, self.calls = 0.0, costs, []

    def __call__(self):
        return self.now

    def candidates(self):
        def make(name):
            def run():
                self.calls.append(name)
                self.now += self.costs[name]
            return run
        return {name: make(name) for name in self.costs}


def test_picks_the_fastest_and_runs_it_last(cache_file):
    clock = FakeClock({"direct": 3.0, "im2col": 1.0, "winograd": 2.0})
    assert autotune.choose("k1", clock.candidates(), timer=clock) == "im2col"
    assert clock.calls[:3] == ["direct", "im2col", "winograd"]  # warm-up round
    assert len(clock.calls) == 3 + 3 * autotune.REPEAT + 1 and clock.calls[-1] == "im2col"
    assert json.loads(cache_file.read_text()) == {"k1": "im2col"}


def test_remembered_winner_runs_nothing(cache_file):
    clock = FakeClock({"a": 2.0, "b": 1.0})
    autotune.choose("k2", clock.candidates(), timer=clock)
    clock.calls.clear()
    assert autotune.choose("k2", clock.candidates(), timer=clock) == "b"
    assert clock.calls == []


def test_disk_cache_survives_a_memory_clear_and_merges_keys(cache_file):
    clock = FakeClock({"a": 1.0, "b": 2.0})
    autotune.choose("k3", clock.candidates(), timer=clock)
    autotune.clear()  # a new process: memory empty, the file remains
    assert autotune.lookup("k3") == "a"
    other = FakeClock({"a": 5.0, "b": 1.0})
    autotune.choose("k4", other.candidates(), timer=other)
    assert json.loads(cache_file.read_text()) == {"k3": "a", "k4": "b"}
    autotune.clear(disk=True)
    assert not cache_file.exists() and autotune.lookup("k3") is None


def test_corrupt_file_is_treated_as_empty(cache_file):
    cache_file.parent.mkdir(parents=True)
    cache_file.write_text("{not json")
    clock = FakeClock({"a": 1.0, "b": 2.0})
    assert autotune.choose("k5", clock.candidates(), timer=clock) == "a"
    assert json.loads(cache_file.read_text()) == {"k5": "a"}


def test_unwritable_location_keeps_choices_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", str(blocker / "sub" / "autotune.json"))  # parent is a file
    autotune.clear()
    clock = FakeClock({"a": 2.0, "b": 1.0})
    assert autotune.choose("k6", clock.candidates(), timer=clock) == "b"
    clock.calls.clear()
    assert autotune.choose("k6", clock.candidates(), timer=clock) == "b" and clock.calls == []


def test_off_means_memory_only(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", "off")
    autotune.clear()
    assert autotune.cache_path() is None
    assert autotune.choose("k7", FakeClock({"a": 1.0}).candidates()) == "a"
    assert list(tmp_path.iterdir()) == []


def test_key_holds_the_problem_and_the_thread_count():
    key = autotune.make_key("conv2d", x_shape=(1, 2, 3, 4), dtype="float32")
    assert key.startswith("conv2d|fastconv=") and "x_shape=(1, 2, 3, 4)" in key and "|threads=" in key
    assert autotune.make_key("conv2d", dtype="float32", x_shape=(1, 2, 3, 4)) == key  # order-free
    assert autotune.make_key("conv2d", x_shape=(1, 2, 3, 5), dtype="float32") != key


def test_concurrent_choices_are_consistent(cache_file):
    results, errors = [], []

    def worker(i):
        try:
            clock = FakeClock({"a": 1.0 + i % 2, "b": 1.5})
            results.append((i % 2, autotune.choose(f"key-{i % 4}", clock.candidates(), timer=clock)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = json.loads(cache_file.read_text())
    assert set(stored) == {"key-0", "key-1", "key-2", "key-3"}
    assert all(stored[f"key-{k}"] == ("a" if k % 2 == 0 else "b") for k in range(4))
    assert not [f for f in os.listdir(cache_file.parent) if f.startswith(".autotune-")]  # no temp files left


def test_conv2d_measure_times_every_algorithm_once_then_reuses_the_winner(cache_file):
    import numpy as np

    import fastconv
    import fastconv.reference
    from fastconv.dispatch import CONV2D_KERNEL_ALGOS

    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 4, 9, 7)), rng.standard_normal((6, 4, 3, 3)), rng.standard_normal(6)
    plan = fastconv.plan_conv2d(x.shape, w.shape, padding=1, dtype=np.float64, algo="measure")
    assert plan.algo == "measure" and "not measured yet" in plan.reason
    want = fastconv.reference.conv2d(x, w, b, padding=1)
    np.testing.assert_allclose(fastconv.conv2d(x, w, b, padding=1, algo="measure"), want, rtol=1e-12, atol=1e-12)
    stored = json.loads(cache_file.read_text())
    assert len(stored) == 1 and next(iter(stored.values())) in CONV2D_KERNEL_ALGOS
    plan = fastconv.plan_conv2d(x.shape, w.shape, padding=1, dtype=np.float64, algo="measure")
    assert plan.algo == next(iter(stored.values())) and plan.reason.startswith("measured")
    np.testing.assert_allclose(fastconv.conv2d(x, w, b, padding=1, algo="measure"), want, rtol=1e-12, atol=1e-12)
