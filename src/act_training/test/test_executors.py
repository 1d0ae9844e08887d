"""Executors vs straightforward dict-of-lists reference implementations on random chunks."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from act_training.runtime.executors import ChunkedExecutor, TemporalEnsembleExecutor, make_executor


class RefEnsemble:
    """The ACT paper's ensembling written the obvious way: every prediction kept, forever."""

    def __init__(self, chunk_size, action_dim, k=0.01, query_period=1):
        self.C, self.A, self.k, self.p = chunk_size, action_dim, k, query_period
        self.preds = defaultdict(list)
        self.step = 0
        self.last = None

    def needs_query(self):
        return self.last is None or self.step - self.last >= self.p

    def add_chunk(self, chunk, step=None):
        s = self.step if step is None else step
        self.last = s
        for j in range(self.C):
            if s + j >= self.step:
                self.preds[s + j].append(np.asarray(chunk[j], dtype=np.float64))

    def next_action(self):
        preds = self.preds.get(self.step, [])
        out = None
        if preds:
            w = np.exp(-self.k * np.arange(len(preds)))  # i = 0 the oldest
            out = np.sum([wi * p for wi, p in zip(w, preds)], axis=0) / w.sum()
        self.step += 1
        return out


class RefChunked:
    def __init__(self, chunk_size, action_dim, n_execute=None):
        self.C, self.n = chunk_size, n_execute or chunk_size
        self.chunk, self.s, self.step = None, None, 0

    def needs_query(self):
        return self.chunk is None or self.step - self.s >= self.n

    def add_chunk(self, chunk, step=None):
        self.chunk, self.s = np.asarray(chunk), self.step if step is None else step

    def next_action(self):
        out = None
        if self.chunk is not None and self.step - self.s < self.C:
            out = self.chunk[self.step - self.s]
        self.step += 1
        return out


def _run_pair(ex, ref, rng, n_steps, max_latency, action_dim, chunk_size):
    """Drive both with the same random chunks; inference takes 0..max_latency ticks."""
    pending = None  # (obs tick, ready tick, chunk)
    n_none = 0
    for _ in range(n_steps):
        if pending is not None and ex.step >= pending[1]:
            ex.add_chunk(pending[2], step=pending[0])
            ref.add_chunk(pending[2], step=pending[0])
            pending = None
        assert ex.needs_query() == ref.needs_query()
        if pending is None and ex.needs_query():
            chunk = rng.normal(size=(chunk_size, action_dim)).astype(np.float32)
            latency = int(rng.integers(0, max_latency + 1))
            if latency == 0:
                ex.add_chunk(chunk)
                ref.add_chunk(chunk)
            else:
                pending = (ex.step, ex.step + latency, chunk)
        a, b = ex.next_action(), ref.next_action()
        assert (a is None) == (b is None)
        if a is None:
            n_none += 1
        else:
            assert a.shape == (action_dim,)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert ex.step == n_steps
    return n_none


@pytest.mark.parametrize("chunk_size,query_period,k,max_latency", [
    (1, 1, 0.01, 0), (5, 1, 0.01, 0), (8, 3, 0.5, 0), (10, 1, 0.01, 3), (6, 2, -0.2, 4), (4, 4, 1.0, 2),
])
def test_ensemble_matches_reference(chunk_size, query_period, k, max_latency):
    rng = np.random.default_rng(chunk_size * 100 + query_period)
    ex = make_executor("ensemble", chunk_size, 3, k=k, query_period=query_period)
    assert isinstance(ex, TemporalEnsembleExecutor)
    ex.reset()
    ref = RefEnsemble(chunk_size, 3, k=k, query_period=query_period)
    _run_pair(ex, ref, rng, 120, max_latency, 3, chunk_size)
    # O(chunk * action_dim) memory whatever the episode length.
    assert ex._sum.shape == (chunk_size, 3)


@pytest.mark.parametrize("chunk_size,n_execute,max_latency", [
    (5, None, 0), (8, 3, 0), (10, 1, 2), (6, 4, 5), (3, 3, 4),
])
def test_chunked_matches_reference(chunk_size, n_execute, max_latency):
    rng = np.random.default_rng(chunk_size + (n_execute or 0))
    ex = make_executor("chunked", chunk_size, 4, n_execute=n_execute)
    assert isinstance(ex, ChunkedExecutor)
    ref = RefChunked(chunk_size, 4, n_execute=n_execute)
    _run_pair(ex, ref, rng, 100, max_latency, 4, chunk_size)


def test_ensemble_weights_oldest_first():
    ex = TemporalEnsembleExecutor(chunk_size=3, action_dim=1, k=1.0)
    ex.add_chunk(np.array([[0.0], [10.0], [20.0]]))
    np.testing.assert_allclose(ex.next_action(), [0.0])
    ex.add_chunk(np.array([[1.0], [11.0], [21.0]]))
    # tick 1: oldest prediction 10 (w=1), newer 1 (w=e^-1)
    w = np.exp(-1.0)
    np.testing.assert_allclose(ex.next_action(), [(10.0 + w * 1.0) / (1 + w)], rtol=1e-6)
    assert ex.step == 2


def test_late_chunk_is_aligned_and_reset():
    ex = ChunkedExecutor(chunk_size=4, action_dim=1)
    assert ex.needs_query()
    assert ex.next_action() is None and ex.next_action() is None
    ex.add_chunk(np.arange(4.0)[:, None], step=0)  # predicted at tick 0, arrives at tick 2
    np.testing.assert_allclose(ex.next_action(), [2.0])
    np.testing.assert_allclose(ex.next_action(), [3.0])
    assert ex.needs_query()
    assert ex.next_action() is None
    ex.reset()
    assert ex.step == 0 and ex.needs_query() and ex.next_action() is None

    en = TemporalEnsembleExecutor(chunk_size=3, action_dim=1)
    for _ in range(5):
        en.next_action()
    en.add_chunk(np.ones((3, 1)), step=1)  # fully stale: ignored, but counts as the last query
    assert en.next_action() is None
    with pytest.raises(ValueError):
        en.add_chunk(np.ones((3, 1)), step=0)  # out of order
    with pytest.raises(ValueError):
        en.add_chunk(np.ones((3, 1)), step=99)  # from the future


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_executor("nope", 4, 2)
    with pytest.raises(ValueError):
        make_executor("chunked", 4, 2, n_execute=5)
    with pytest.raises(ValueError):
        make_executor("ensemble", 4, 2, query_period=0)
    with pytest.raises(ValueError):
        make_executor("ensemble", 4, 2).add_chunk(np.zeros((3, 2)))


def test_chunked_lookahead_prefetch():
    """needs_query(lookahead=L) asks L ticks before the executed part runs out (at least one
    tick into the chunk); the prefetched chunk replaces the current one, aligned."""
    ex = ChunkedExecutor(chunk_size=10, action_dim=1)
    assert ex.needs_query(lookahead=3)  # no chunk yet
    ex.add_chunk(np.arange(10.0)[:, None], step=0)
    wants = []
    for _ in range(10):
        wants.append((ex.needs_query(), ex.needs_query(lookahead=3), ex.needs_query(lookahead=99)))
        ex.next_action()
    assert [w[0] for w in wants] == [False] * 10  # plain rule: only after all 10
    assert [w[1] for w in wants] == [False] * 7 + [True] * 3  # from tick 10 - 3
    assert [w[2] for w in wants] == [False] + [True] * 9  # clamped: at least one tick
    assert ex.needs_query() and ex.needs_query(lookahead=0)

    ex = ChunkedExecutor(chunk_size=10, action_dim=1, n_execute=6)
    ex.add_chunk(np.arange(10.0)[:, None], step=0)
    for _ in range(4):
        ex.next_action()
    assert ex.needs_query(lookahead=2) and not ex.needs_query(lookahead=1) and not ex.needs_query()
    s = ex.step  # query at tick 4 (6 - 2); the chunk arrives 2 ticks later
    np.testing.assert_allclose(ex.next_action(), [4.0])
    np.testing.assert_allclose(ex.next_action(), [5.0])
    ex.add_chunk(100.0 + np.arange(10.0)[:, None], step=s)
    np.testing.assert_allclose(ex.next_action(), [102.0])  # entry for tick 6 of the chunk from tick 4
    assert ex.last_query_step == 4 and not ex.needs_query(lookahead=2)


@pytest.mark.parametrize("mode", ["chunked", "ensemble"])
def test_peek_is_what_next_action_returns(mode):
    """peek(n) shows the next ticks' actions without advancing: the plan a multi-point
    JointTrajectory streams must be what the executor then executes."""
    rng = np.random.default_rng(3)
    C, A = 8, 3
    ex = make_executor(mode, C, A, query_period=3)
    assert ex.peek(4).shape == (0, A)  # nothing stored yet
    for _ in range(20):
        if ex.needs_query():
            ex.add_chunk(rng.normal(size=(C, A)))
        plan = ex.peek(5)
        step = ex.step
        assert ex.step == step and 1 <= len(plan) <= 5
        np.testing.assert_allclose(plan[0], ex.next_action(), rtol=0, atol=1e-6)
    # the rest of the plan is what the following ticks return when no chunk comes in between
    plan = ex.peek(C)
    for j in range(len(plan)):
        np.testing.assert_allclose(plan[j], ex.next_action(), rtol=0, atol=1e-6)
    assert ex.next_action() is None and ex.peek(3).shape == (0, A)  # past every stored chunk
