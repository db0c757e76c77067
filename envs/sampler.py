"""The realization's random draws, compiled: numpy's ``default_rng(seed)`` stream, bit for bit, without numpy.

A realization is drawn from ``np.random.default_rng(seed)`` (``SeedSequence(seed)`` seeding a ``PCG64``) in a
fixed order (:func:`draw`). Calling numpy's ``Generator`` costs microseconds per call and per seed (seeding
alone about 17 us), so a batch of ``B`` resets spent most of its time there. This module is the same stream
written as compiled loops: ``SeedSequence``'s hash and pool mixing, ``PCG64`` (the 128-bit LCG with the XSL-RR
output, its buffered 32-bit draws), and the distributions the draw uses, each a port of numpy's C code
(``numpy/random/src/distributions/distributions.c``): ``random`` (53-bit doubles), ``integers`` (Lemire's
bounded integers on 32-bit draws when the range fits), ``poisson`` (multiplication below 10, PTRS from 10),
``standard_normal`` (the 256-layer ziggurat, numpy's tables). Numba's own ``Generator`` support is not used:
unboxing a ``Generator`` costs about 15 us a call, and its ``poisson`` truncates where numpy floors (it
differs from numpy for rates >= 10). ``tests/test_sampler.py`` checks every piece against numpy (states,
streams, distributions) and whole realizations against numpy's ``Generator`` over thousands of seeds.

The one place the draw order is written is :func:`draw`; :func:`envs.realization.sample_realization` (one seed)
and the batched env (``B`` seeds at once, :func:`draw_batch`, in parallel over members) both call it.
Shapes: ``T`` days, ``R`` regions, ``K`` SKUs, ``W`` warehouses, ``D`` delivery lanes, ``L`` transfer lanes,
``A`` scheduled supplier arrivals, ``M`` members drawn at once.
"""

from __future__ import annotations

import functools
import operator
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic
from numba.np.random._constants import fi_double, ki_double, wi_double, ziggurat_nor_inv_r, ziggurat_nor_r

_U64 = np.uint64
_M32 = _U64(0xFFFFFFFF)
_M64 = _U64(0xFFFFFFFFFFFFFFFF)
# PCG64's multiplier (PCG_DEFAULT_MULTIPLIER_128), high and low words
_MULT_HI, _MULT_LO = _U64(2549297995355413924), _U64(4865540595714422341)
# SeedSequence's hash constants (numpy/random/bit_generator.pyx)
_INIT_A, _MULT_A, _INIT_B, _MULT_B = _U64(0x43B0D7E5), _U64(0x931E8875), _U64(0x8B51F9DD), _U64(0x58F38DED)
_MIX_L, _MIX_R = _U64(0xCA01F9DD), _U64(0x4973F715)
_POOL = 4  # SeedSequence's default pool size (32-bit words)
# the ziggurat's tables (numpy's ziggurat_constants.h), one [3, 256] array passed as an argument (a global array
# this large would keep numba from caching the compiled functions): rows ki (as float: exact, all < 2**53), wi, fi
ZIGGURAT = np.stack([np.asarray(ki_double, dtype=np.float64), np.asarray(wi_double, dtype=np.float64),
                     np.asarray(fi_double, dtype=np.float64)])  # fmt: skip
_NOR_R, _NOR_INV_R = float(ziggurat_nor_r), float(ziggurat_nor_inv_r)
# the generator's state, one uint64 array: state (high, low), increment (high, low), has a buffered 32-bit
# draw (0/1), the buffered draw
STATE_WORDS = 6


@intrinsic
def _mulhi(typingctx, a, b):
    """The high 64 bits of the 128-bit product of two uint64."""
    if a != types.uint64 or b != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        wide = ir.IntType(128)
        product = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        return builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), ir.IntType(64))

    return types.uint64(types.uint64, types.uint64), codegen


# ------------------------------------------------------------------ SeedSequence
@njit(cache=True)
def _hashmix(value, hash_const):
    """SeedSequence's ``hashmix`` on uint32 values held in uint64; ``hash_const[0]`` is updated."""
    value = (value ^ hash_const[0]) & _M32
    hash_const[0] = (hash_const[0] * _MULT_A) & _M32
    value = (value * hash_const[0]) & _M32
    return value ^ (value >> _U64(16))


@njit(cache=True)
def _mix(x, y):
    result = (_MIX_L * x - _MIX_R * y) & _M32
    return result ^ (result >> _U64(16))


@njit(cache=True)
def _step(st):
    """One LCG step of the 128-bit state: ``state = state * multiplier + increment`` (mod 2**128)."""
    hi, lo = st[0], st[1]
    new_lo = lo * _MULT_LO
    new_hi = _mulhi(lo, _MULT_LO) + hi * _MULT_LO + lo * _MULT_HI
    out_lo = new_lo + st[3]
    carry = _U64(1) if out_lo < new_lo else _U64(0)
    st[0] = new_hi + st[2] + carry
    st[1] = out_lo


@njit(cache=True)
def seed(entropy, st):
    """``PCG64(SeedSequence(entropy))`` into ``st[STATE_WORDS]``: ``entropy`` the seed's uint32 words
    (:func:`entropy_words`), as numpy assembles them for an integer seed (no spawn key)."""
    hash_const = np.empty(1, np.uint64)
    hash_const[0] = _INIT_A
    pool = np.empty(_POOL, np.uint64)
    n = entropy.shape[0]
    for i in range(_POOL):
        pool[i] = _hashmix(_U64(entropy[i]) if i < n else _U64(0), hash_const)
    for i_src in range(_POOL):
        for i_dst in range(_POOL):
            if i_src != i_dst:
                pool[i_dst] = _mix(pool[i_dst], _hashmix(pool[i_src], hash_const))
    for i_src in range(_POOL, n):
        for i_dst in range(_POOL):
            pool[i_dst] = _mix(pool[i_dst], _hashmix(_U64(entropy[i_src]), hash_const))
    # generate_state(4, uint64): eight uint32 words cycling over the pool, paired little-endian
    words = np.empty(8, np.uint64)
    h = _INIT_B
    for i in range(8):
        value = pool[i % _POOL] ^ h
        h = (h * _MULT_B) & _M32
        value = (value * h) & _M32
        words[i] = value ^ (value >> _U64(16))
    initstate_hi, initstate_lo = words[0] | (words[1] << _U64(32)), words[2] | (words[3] << _U64(32))
    initseq_hi, initseq_lo = words[4] | (words[5] << _U64(32)), words[6] | (words[7] << _U64(32))
    # pcg_setseq_128_srandom_r
    st[0], st[1] = _U64(0), _U64(0)
    st[2] = (initseq_hi << _U64(1)) | (initseq_lo >> _U64(63))
    st[3] = (initseq_lo << _U64(1)) | _U64(1)
    _step(st)
    lo = st[1] + initstate_lo
    carry = _U64(1) if lo < initstate_lo else _U64(0)
    st[0] = st[0] + initstate_hi + carry
    st[1] = lo
    _step(st)
    st[4], st[5] = _U64(0), _U64(0)


@njit(cache=True)
def seed_int(value, st):
    """:func:`seed` for an integer seed ``0 <= value < 2**63`` given as int64 (its one or two words)."""
    entropy = np.empty(2, np.uint32)
    v = _U64(value)
    entropy[0] = np.uint32(v & _M32)
    entropy[1] = np.uint32(v >> _U64(32))
    seed(entropy[:1] if v <= _M32 else entropy, st)


def entropy_words(value) -> np.ndarray:
    """The uint32 words numpy's ``SeedSequence`` makes of an integer seed ``>= 0`` (least significant first)."""
    n = operator.index(value)
    if n < 0:
        raise ValueError(f"seed={value!r} must be an integer >= 0")
    words = [0] if n == 0 else []
    while n > 0:
        words.append(n & 0xFFFFFFFF)
        n >>= 32
    return np.array(words, dtype=np.uint32)


# ------------------------------------------------------------------ PCG64 draws
@njit(cache=True)
def next64(st):
    """``next_uint64``: step, then the XSL-RR output of the new state."""
    _step(st)
    hi, lo = st[0], st[1]
    rot = hi >> _U64(58)
    x = hi ^ lo
    return (x >> rot) | (x << ((_U64(64) - rot) & _U64(63)))


@njit(cache=True)
def next32(st):
    """``next_uint32``: the low half of a 64-bit draw, its high half kept for the next call."""
    if st[4] != 0:
        st[4] = _U64(0)
        return st[5]
    x = next64(st)
    st[4] = _U64(1)
    st[5] = x >> _U64(32)
    return x & _M32


@njit(cache=True)
def next_double(st):
    """``random()``: a double in ``[0, 1)`` from the top 53 bits of a 64-bit draw."""
    return np.float64(next64(st) >> _U64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def bounded(st, low, high):
    """``integers(low, high + 1)`` of one int64 (numpy's ``random_bounded_uint64``, Lemire's method)."""
    off = _U64(low)
    rng = _U64(high) - off
    if rng == _U64(0):
        return low
    if rng <= _M32:
        if rng == _M32:
            return np.int64(off + next32(st))
        excl = rng + _U64(1)
        m = next32(st) * excl
        leftover = m & _M32
        if leftover < excl:
            threshold = (_M32 - rng) % excl
            while leftover < threshold:
                m = next32(st) * excl
                leftover = m & _M32
        return np.int64(off + (m >> _U64(32)))
    if rng == _M64:
        return np.int64(off + next64(st))
    excl = rng + _U64(1)
    x = next64(st)
    leftover = x * excl
    if leftover < excl:
        threshold = (_M64 - rng) % excl
        while leftover < threshold:
            x = next64(st)
            leftover = x * excl
    return np.int64(off + _mulhi(x, excl))


@njit(cache=True)
def _loggam(x):
    """numpy's ``random_loggam``: log Gamma(x) for the PTRS acceptance test."""
    a0, a1, a2, a3, a4 = 8.333333333333333e-02, -2.777777777777778e-03, 7.936507936507937e-04, -5.952380952380952e-04, 8.417508417508418e-04  # noqa: E501  # fmt: skip
    a5, a6, a7, a8, a9 = -1.917526917526918e-03, 6.410256410256410e-03, -2.955065359477124e-02, 1.796443723688307e-01, -1.39243221690590e00  # noqa: E501  # fmt: skip
    if x == 1.0 or x == 2.0:
        return 0.0
    n = int(7 - x) if x < 7.0 else 0
    x0 = x + n
    x2 = (1.0 / x0) * (1.0 / x0)
    gl0 = a9
    for a in (a8, a7, a6, a5, a4, a3, a2, a1, a0):
        gl0 *= x2
        gl0 += a
    gl = gl0 / x0 + 0.5 * 1.8378770664093453e00 + (x0 - 0.5) * np.log(x0) - x0
    if x < 7.0:
        for _ in range(n):
            gl -= np.log(x0 - 1.0)
            x0 -= 1.0
    return gl


@njit(cache=True)
def _exp_neg(x):
    """``exp(-x)`` elementwise, by the same scalar ``exp`` as :func:`poisson` (numpy's C code calls libm's)."""
    out = np.empty_like(x)
    flat, src = out.reshape(-1), x.reshape(-1)
    for i in range(src.shape[0]):
        out_i = np.exp(-src[i])
        flat[i] = out_i
    return out


@njit(cache=True)
def poisson(st, lam, limit=-1.0):
    """``poisson(lam)`` of one rate: numpy's multiplication method below 10, its PTRS (with ``floor``) from 10.

    ``limit``: ``exp(-lam)`` when the caller has it (:attr:`Model.poisson_limit`), else computed here.
    """
    if lam >= 10:
        slam = np.sqrt(lam)
        loglam = np.log(lam)
        b = 0.931 + 2.53 * slam
        a = -0.059 + 0.02483 * b
        invalpha = 1.1239 + 1.1328 / (b - 3.4)
        vr = 0.9277 - 3.6224 / (b - 2)
        while True:
            U = next_double(st) - 0.5
            V = next_double(st)
            us = 0.5 - np.fabs(U)
            k = np.int64(np.floor((2 * a / us + b) * U + lam + 0.43))
            if us >= 0.07 and V <= vr:
                return k
            if k < 0 or (us < 0.013 and V > us):
                continue
            lhs = np.log(V) + np.log(invalpha) - np.log(a / (us * us) + b)
            if lhs <= -lam + k * loglam - _loggam(np.float64(k + 1)):
                return k
    if lam == 0:
        return np.int64(0)
    enlam = np.exp(-lam) if limit < 0 else limit
    x = np.int64(0)
    prod = 1.0
    while True:
        prod *= next_double(st)
        if prod > enlam:
            x += 1
        else:
            return x


@njit(cache=True)
def standard_normal(st, zig):
    """``standard_normal()``: numpy's ziggurat (``random_standard_normal``), its tables ``zig`` (:data:`ZIGGURAT`)."""
    while True:
        r = next64(st)
        idx = np.int64(r & _U64(0xFF))
        r >>= _U64(8)
        sign = r & _U64(1)
        rabs = (r >> _U64(1)) & _U64(0x000FFFFFFFFFFFFF)
        x = np.float64(rabs) * zig[1, idx]
        if sign:
            x = -x
        if np.float64(rabs) < zig[0, idx]:  # exact: both below 2**53
            return x
        if idx == 0:
            while True:
                xx = -_NOR_INV_R * np.log1p(-next_double(st))
                yy = -np.log1p(-next_double(st))
                if yy + yy > xx * xx:
                    return -(_NOR_R + xx) if (rabs >> _U64(8)) & _U64(1) else _NOR_R + xx
        elif (zig[2, idx - 1] - zig[2, idx]) * next_double(st) + zig[2, idx] < np.exp(-0.5 * x * x):
            return x


# ------------------------------------------------------------------ the realization
class Model(NamedTuple):
    """The network's random models, as the draws read them (:func:`model`)."""

    mean_demand: np.ndarray  # [T, R, K] float units/day, the Poisson rates
    poisson_limit: np.ndarray  # [T, R, K] exp(-mean_demand), the multiplication method's bound (per rate, once)
    demand_cap: np.ndarray  # [T, R, K] int
    dl_transit_range: np.ndarray  # [D, 2] int days
    dl_abnormal_prob: np.ndarray  # [D]
    dl_abnormal_range: np.ndarray  # [D, 2] int days
    dl_closure_prob: np.ndarray  # [D]
    tl_lead_range: np.ndarray  # [L, 2] int days
    tl_closure_prob: np.ndarray  # [L]
    supply_quantity: np.ndarray  # [A] int units
    supply_cv: np.ndarray  # [A]
    supply_index: np.ndarray  # [A] flat (day * W + warehouse) * K + SKU
    ziggurat: np.ndarray  # [3, 256] the normal's tables (:data:`ZIGGURAT`)


@functools.lru_cache(maxsize=64)
def model(net) -> Model:
    """The :class:`Model` of an :class:`envs.network.Network` (contiguous, fixed dtypes; once per network)."""
    i64, f64 = np.int64, np.float64

    def c(x, dtype):
        return np.ascontiguousarray(x, dtype=dtype)

    mean = c(net.mean_demand, f64)
    return Model(
        mean, _exp_neg(mean), c(net.demand_cap, i64), c(net.dl_transit_range, i64).reshape(net.D, 2),
        c(net.dl_abnormal_prob, f64), c(net.dl_abnormal_range, i64).reshape(net.D, 2), c(net.dl_closure_prob, f64),
        c(net.tl_lead_range, i64).reshape(net.L, 2), c(net.tl_closure_prob, f64), c(net.supply_quantity, i64),
        c(net.supply_cv, f64), c(net.supply_index, i64), ZIGGURAT,
    )  # fmt: skip


@njit(cache=True)
def draw(st, m, demand, transit, abnormal, dopen, lead, topen, supply):
    """One realization from the seeded state ``st``, into ``demand[T, R, K]``, ``transit``/``abnormal[T, D]``
    (days, delay included / the abnormal delay), ``dopen[T, D]``, ``lead[T, L]`` (days), ``topen[T, L]``,
    ``supply[T, W, K]`` (units). ``m`` is a :class:`Model`.

    The draw order is fixed (a seed always gives the same trace), each array in C order:

    1. demand: ``min(poisson(mean_demand), demand_cap)``;
    2. transit days without delay: ``integers(lo, hi + 1)`` per (day, lane);
    3. abnormal flags: ``random() < abnormal_prob``; 4. abnormal days: ``integers(lo, hi + 1)``, drawn for
       every (day, lane), kept where flagged;
    5. delivery lanes open: ``random() >= closure_prob``;
    6. transfer leads: ``integers(lo, hi + 1)``; 7. transfer lanes open: ``random() >= closure_prob``;
    8. supplier units: one ``standard_normal()`` per scheduled arrival (shipments in scenario order),
       ``clip(floor(q * (1 + cv * z) + 0.5), 0, 2q)``, the arrivals of one (day, hub, SKU) added up.
    """
    T, R, K = m.mean_demand.shape
    D, L = transit.shape[1], lead.shape[1]
    for t in range(T):
        for r in range(R):
            for k in range(K):
                units = poisson(st, m.mean_demand[t, r, k], m.poisson_limit[t, r, k])
                demand[t, r, k] = min(units, m.demand_cap[t, r, k])
    for t in range(T):
        for d in range(D):
            transit[t, d] = bounded(st, m.dl_transit_range[d, 0], m.dl_transit_range[d, 1])
    for t in range(T):
        for d in range(D):
            dopen[t, d] = next_double(st) < m.dl_abnormal_prob[d]  # the flags, until step 5 overwrites them
    for t in range(T):
        for d in range(D):
            extra = bounded(st, m.dl_abnormal_range[d, 0], m.dl_abnormal_range[d, 1])
            abnormal[t, d] = extra if dopen[t, d] else 0
            transit[t, d] += abnormal[t, d]
    for t in range(T):
        for d in range(D):
            dopen[t, d] = next_double(st) >= m.dl_closure_prob[d]
    for t in range(T):
        for ln in range(L):
            lead[t, ln] = bounded(st, m.tl_lead_range[ln, 0], m.tl_lead_range[ln, 1])
    for t in range(T):
        for ln in range(L):
            topen[t, ln] = next_double(st) >= m.tl_closure_prob[ln]
    flat = supply.reshape(-1)
    flat[:] = 0
    for a in range(m.supply_quantity.shape[0]):
        q = m.supply_quantity[a]
        units = np.floor(q * (1 + m.supply_cv[a] * standard_normal(st, m.ziggurat)) + 0.5)
        flat[m.supply_index[a]] += np.int64(min(max(units, 0.0), 2.0 * q))


@njit(cache=True, parallel=True)
def draw_batch(seeds, m, demand, transit, abnormal, dopen, lead, topen, supply):
    """:func:`draw` of ``seeds[M]`` (int64, ``0 <= seed < 2**63``), member ``i`` into row ``i`` of each output
    (``demand[M, T, R, K]`` and so on); members are drawn in parallel, each from its own generator."""
    for i in prange(seeds.shape[0]):
        st = np.empty(STATE_WORDS, np.uint64)
        seed_int(seeds[i], st)
        draw(st, m, demand[i], transit[i], abnormal[i], dopen[i], lead[i], topen[i], supply[i])


@njit(cache=True)
def draw_one(entropy, m, demand, transit, abnormal, dopen, lead, topen, supply):
    """:func:`draw` of the generator seeded with ``entropy`` (:func:`entropy_words`)."""
    st = np.empty(STATE_WORDS, np.uint64)
    seed(entropy, st)
    draw(st, m, demand, transit, abnormal, dopen, lead, topen, supply)
