"""The compiled sampler (envs/sampler.py) is numpy's ``default_rng(seed)`` stream, bit for bit.

``scenario.sample(seed)`` must return the realization it always returned (answer keys, caches and the
shipped agents' recorded returns depend on it). The reference here is the numpy code that drew it before
the sampler was compiled (``numpy_realization``, kept verbatim as the oracle): every realization field must be
equal, over thousands of seeds of every preset and of generated scenarios, and so must every piece of the
generator (seeding, 64/32-bit draws, doubles, bounded integers, Poisson, normals) against numpy's own.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from envs import generate_scenario, sampler
from envs.realization import Realization
from envs.scenario import load_scenario, preset_names

FIELDS = ("demand", "transit_days", "abnormal_delay", "delivery_open", "transfer_lead", "transfer_open", "supply")


def numpy_realization(scenario, seed: int) -> tuple[np.ndarray, ...]:
    """The draws as numpy's Generator made them (the sampler's code before it was compiled), in FIELDS order."""
    net = scenario.network
    T, D, L = net.T, net.D, net.L
    rng = np.random.default_rng(seed)
    demand = np.minimum(rng.poisson(net.mean_demand), net.demand_cap)
    base = rng.integers(net.dl_transit_range[:, 0], net.dl_transit_range[:, 1] + 1, size=(T, D))
    is_abnormal = rng.random((T, D)) < net.dl_abnormal_prob
    extra = rng.integers(net.dl_abnormal_range[:, 0], net.dl_abnormal_range[:, 1] + 1, size=(T, D))
    delay = np.where(is_abnormal, extra, 0)
    open_d = rng.random((T, D)) >= net.dl_closure_prob
    lead = rng.integers(net.tl_lead_range[:, 0], net.tl_lead_range[:, 1] + 1, size=(T, L))
    open_t = rng.random((T, L)) >= net.tl_closure_prob
    noise = rng.standard_normal(len(net.supply_day))
    q = net.supply_quantity
    qty = np.minimum(np.maximum(np.floor(q * (1 + net.supply_cv * noise) + 0.5), 0), 2 * q).astype(np.int64)
    supply = np.bincount(net.supply_index, weights=qty, minlength=T * net.W * net.K)
    supply = supply.astype(np.int64).reshape(T, net.W, net.K)
    return (demand, (base + delay).astype(np.int64), delay.astype(np.int64), open_d,
            lead.astype(np.int64).reshape(T, L), open_t.reshape(T, L), supply)  # fmt: skip


def assert_same(real: Realization, reference: tuple[np.ndarray, ...], label) -> None:
    for name, want in zip(FIELDS, reference, strict=True):
        got = getattr(real, name)
        assert got.dtype == want.dtype and got.shape == want.shape, (label, name, got.dtype, want.dtype)
        assert np.array_equal(got, want), (label, name)


def _batch(scenario, seeds) -> tuple[np.ndarray, ...]:
    net, M = scenario.network, len(seeds)
    T, D, L, W, K = net.T, net.D, net.L, net.W, net.K
    out = (np.empty((M, T, net.R, K), np.int64), np.empty((M, T, D), np.int64), np.empty((M, T, D), np.int64),
           np.empty((M, T, D), np.bool_), np.empty((M, T, L), np.int64), np.empty((M, T, L), np.bool_),
           np.empty((M, T, W, K), np.int64))  # fmt: skip
    sampler.draw_batch(np.asarray(seeds, np.int64), sampler.model(net), *out)
    return out


STOCHASTIC = [p for p in preset_names() if not load_scenario(p).deterministic]
BIG_SEEDS = [0, 1, 2**32 - 1, 2**32, 2**40 + 7, 2**63 - 2]


@pytest.mark.parametrize("preset", STOCHASTIC)
def test_sample_is_numpys_draw_for_every_seed(preset):
    scenario = load_scenario(preset)
    n = 150 if preset == "large" else 2500
    seeds = list(range(n)) + BIG_SEEDS + [2**64 + 5, 2**100 + 3]
    for seed in seeds:
        assert_same(scenario.sample(seed), numpy_realization(scenario, seed), (preset, seed))
    # the batched draw (parallel over members) gives each member the same realization
    small = [s for s in seeds if s < 2**63]
    batch = _batch(scenario, small)
    for i, seed in enumerate(small):
        real = Realization(seed, *(x[i] for x in batch))
        assert_same(real, numpy_realization(scenario, seed), (preset, seed, "batch"))


@pytest.mark.parametrize("gen_seed", range(12))
def test_sample_is_numpys_draw_on_generated_scenarios(gen_seed):
    rng = np.random.default_rng(gen_seed)
    scenario = generate_scenario(gen_seed, hubs=int(rng.integers(1, 3)), regions=int(rng.integers(2, 8)),
                                 skus=int(rng.integers(1, 6)), days=int(rng.integers(5, 40)))  # fmt: skip
    for seed in range(200):
        assert_same(scenario.sample(seed), numpy_realization(scenario, seed), (gen_seed, seed))


def test_promo_draws_rates_of_ten_and_more():
    """The PTRS branch of Poisson (rates >= 10) is exercised by the presets (numba's own Poisson differs there)."""
    assert load_scenario("promo").network.mean_demand.max() >= 10


def test_bad_seeds_are_refused():
    scenario = load_scenario("tiny")
    with pytest.raises(ValueError, match="must be an integer >= 0"):
        scenario.sample(-1)
    with pytest.raises(TypeError):
        scenario.sample(1.5)


# ------------------------------------------------------------------ the generator, piece by piece
def _state(seed: int) -> np.ndarray:
    st = np.empty(sampler.STATE_WORDS, np.uint64)
    sampler.seed(sampler.entropy_words(seed), st)
    return st


@pytest.mark.parametrize("seed", [*BIG_SEEDS, 12345, 2**64 + 5, 2**100 + 3])
def test_seeding_is_pcg64_of_seed_sequence(seed):
    st = _state(seed)
    want = np.random.PCG64(seed).state["state"]
    assert (int(st[0]) << 64 | int(st[1])) == want["state"]
    assert (int(st[2]) << 64 | int(st[3])) == want["inc"]
    if seed < 2**63:
        st2 = np.empty(sampler.STATE_WORDS, np.uint64)
        sampler.seed_int(np.int64(seed), st2)
        assert np.array_equal(st, st2)


@njit
def _stream(st, kind, n, a, b):
    out = np.empty(n, np.int64)
    real = np.empty(n, np.float64)
    for i in range(n):
        if kind == 0:
            real[i] = sampler.next_double(st)
        elif kind == 1:
            out[i] = sampler.bounded(st, np.int64(a), np.int64(b))
        elif kind == 2:
            out[i] = sampler.poisson(st, float(a))
        elif kind == 3:
            real[i] = sampler.standard_normal(st, sampler.ZIGGURAT)
        else:
            out[i] = np.int64(sampler.next64(st))
    return out, real


N = 100_000


def test_the_ziggurat_tables_are_held_exactly():
    from numba.np.random._constants import ki_double

    assert np.array_equal(sampler.ZIGGURAT[0].astype(np.uint64), np.asarray(ki_double, dtype=np.uint64))
    assert sampler.ZIGGURAT[0].max() < 2**53


@pytest.mark.parametrize("seed", [0, 7])
def test_each_distribution_is_numpys(seed):
    assert np.array_equal(_stream(_state(seed), 0, N, 0, 0)[1], np.random.default_rng(seed).random(N))
    assert np.array_equal(_stream(_state(seed), 3, N, 0, 0)[1], np.random.default_rng(seed).standard_normal(N))
    raw = np.random.default_rng(seed).bit_generator.random_raw(N).astype(np.uint64)
    assert np.array_equal(_stream(_state(seed), 4, N, 0, 0)[0].view(np.uint64), raw)
    for lo, hi in [(3, 9), (0, 0), (5, 5), (0, 1), (1, 40), (-5, 17), (0, 2**32 - 2), (0, 2**32 - 1), (0, 2**40),
                   (0, 2**63 - 2)]:  # fmt: skip
        want = np.random.default_rng(seed).integers(lo, hi, N, endpoint=True)
        assert np.array_equal(_stream(_state(seed), 1, N, lo, hi)[0], want), (lo, hi)
    for lam in [0.0, 0.19, 0.95, 3.0, 9.999, 10.0, 11.0, 25.0, 1234.5]:
        assert np.array_equal(_stream(_state(seed), 2, N, lam, 0)[0], np.random.default_rng(seed).poisson(lam, N)), lam


def test_32_bit_draws_share_a_64_bit_draw_across_calls():
    """numpy buffers the unused half of a 64-bit draw for the next 32-bit one, across calls and distributions."""
    g, st = np.random.default_rng(3), _state(3)
    want = np.concatenate([g.integers(0, 10, 3), g.random(2), g.integers(0, 10, 1), g.standard_normal(3),
                           g.integers(0, 7, 2)])  # fmt: skip
    got = [_stream(st, 1, 3, 0, 9)[0], _stream(st, 0, 2, 0, 0)[1], _stream(st, 1, 1, 0, 9)[0],
           _stream(st, 3, 3, 0, 0)[1], _stream(st, 1, 2, 0, 6)[0]]  # fmt: skip
    assert np.array_equal(np.concatenate(got).astype(np.float64), want.astype(np.float64))
