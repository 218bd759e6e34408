"""The benchmark's timing loop (``fastconv.benchmarks.common.best_times``): rounds and pauses."""

import fastconv.benchmarks.common as common


def _fake_clock(monkeypatch, call_seconds):
    """A clock that advances ``call_seconds[name]`` per call of ``name`` and records the pauses."""
    now = [0.0]
    pauses = []
    monkeypatch.setattr(common.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(common.time, "sleep", pauses.append)

    def candidate(name):
        def call():
            now[0] += call_seconds[name]
        return call
    return {name: candidate(name) for name in call_seconds}, pauses


def test_short_calls_get_rounds_until_each_has_run_min_seconds(monkeypatch):
    # Binary fractions: the fake clock's sums are exact.
    candidates, pauses = _fake_clock(monkeypatch, {"fast": 2.0**-6, "slow": 2.0**-3})
    best_times = common.best_times(candidates, repeat=3, pause=0.02, min_seconds=0.25)
    assert best_times == {"fast": 2.0**-6, "slow": 2.0**-3}
    assert len(pauses) == 2 * 16  # 16 rounds: the fast candidate reaches 0.25 s
    candidates, pauses = _fake_clock(monkeypatch, {"fast": 2.0**-10})
    common.best_times(candidates, repeat=3, pause=0.02, min_seconds=0.25)
    assert len(pauses) == common.MAX_ROUNDS
    candidates, pauses = _fake_clock(monkeypatch, {"slow": 1.0})
    common.best_times(candidates, repeat=3, pause=0.02, min_seconds=0.25)
    assert len(pauses) == 3  # never fewer than ``repeat``


def test_spinning_peers_are_followed_by_a_longer_pause(monkeypatch):
    candidates, pauses = _fake_clock(monkeypatch, {"ours": 0.01, "ort": 0.01})
    common.best_times(candidates, repeat=2, pause=0.02, spinning={"ort"})
    assert pauses == [0.02, common.SPIN_PARK_SECONDS] * 2
