from __future__ import annotations

import random

import pytest

from batchser.batching import make_batches


def test_budget_and_cap_respected_and_every_index_once():
    rng = random.Random(0)
    durs = [rng.choice([rng.uniform(1, 5), rng.uniform(20, 60)]) for _ in range(500)]
    batches = make_batches(durs, batch_seconds=120, max_batch_size=32)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(500))
    for b in batches:
        assert len(b) <= 32
        assert len(b) == 1 or len(b) * max(durs[i] for i in b) <= 120 + 1e-9


def test_short_clips_in_big_batches_long_in_small():
    durs = [2.0] * 100 + [50.0] * 10
    batches = make_batches(durs, batch_seconds=100, max_batch_size=64)
    sizes = {max(durs[i] for i in b): len(b) for b in batches}
    assert sizes[50.0] == 2 and sizes[2.0] == 50


def test_sorted_by_length_keeps_padding_low():
    rng = random.Random(1)
    durs = [rng.uniform(1, 30) for _ in range(300)]
    batches = make_batches(durs, batch_seconds=200, max_batch_size=64)
    real = sum(durs)
    padded = sum(len(b) * max(durs[i] for i in b) for b in batches)
    assert real / padded > 0.9


def test_unknown_durations_are_batched_too():
    batches = make_batches([None, 3.0, None, 4.0], batch_seconds=25, max_batch_size=8, assume_seconds=10)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3]
    assert [0, 2] in batches


def test_single_overlong_utterance_gets_its_own_batch():
    assert make_batches([500.0, 1.0], batch_seconds=100, max_batch_size=8) == [[0], [1]]


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_batches([1.0], batch_seconds=0, max_batch_size=1)
