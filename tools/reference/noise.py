"""Counter-based uniform noise, bit-identical to src/sampling/counter_noise.h.

The official LLaDA sampler draws its noise with torch.rand_like over the whole
(L x V) logits tensor, so a draw depends on the tensor's layout and on every
draw made before it. This source instead derives each uniform from
(seed, stream, step, pos, col) alone, so the reference, the C++ CPU engine and
the CUDA kernels (which never form L x V) see the very same numbers.

Spec (uint64 arithmetic mod 2^64):

    splitmix64(z): z += 0x9E3779B97F4A7C15
                   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
                   z = (z ^ (z >> 27)) * 0x94D049BB133111EB
                   return z ^ (z >> 31)
    counter_uniform(seed, stream, step, pos, col):
        h = splitmix64(seed)
        h = splitmix64(h ^ stream); h = splitmix64(h ^ step)
        h = splitmix64(h ^ pos);    h = splitmix64(h ^ col)
        return ((h >> 11) + 0.5) * 2**-53          # float64 in the open interval (0, 1)

Streams: GUMBEL = 1 (col = vocab id; LLaDA's gumbel noise and Dream's categorical token
draw), REMASK = 2 (col = 0; LLaDA random remasking), 3 = make_model_goldens.py's eval
masks, ORIGIN = 4 (col = 0; Dream alg 'origin': does a masked position transfer),
ALG = 5 (col = 0; Dream alg_temp > 0: the multinomial selection of the positions).
step = the global step index (0-based, counting across blocks); pos = absolute
position in the sequence (prompt included).

Test vectors (python3 tools/reference/noise.py prints them; the C++ test pins them):

    splitmix64(0)                            = 0xe220a8397b1dcdaf
    counter_uniform(42, 1, 3, 7, 11)   = 0.9375336099635212   bits 0x3fee00467c36366c
    counter_uniform(42, 2, 3, 7, 0)    = 0.8559992803173655   bits 0x3feb64589a4b9a98
    counter_uniform(0, 1, 0, 0, 0)     = 0.97528733021698266  bits 0x3fef358dc66f85e2
    counter_uniform(2**64-1, 2, 2**32, 123456789, 126335)
                                       = 0.9216778151787699   bits 0x3fed7e6279348792

(The hex form is the IEEE-754 bit pattern of the float64; __main__ recomputes and
checks these, and prints the decimal values with 17 significant digits.)

Two implementations: numpy (the canonical one, vectorised over columns) and torch
(int64 with wrap-around, logical shifts emulated, usable on CUDA). The self-test
checks that they agree bit for bit.
"""
from __future__ import annotations

import struct
import warnings

import numpy as np

GUMBEL = 1
REMASK = 2
ORIGIN = 4
ALG = 5

_MASK64 = (1 << 64) - 1
_C0 = 0x9E3779B97F4A7C15
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB


# ---------------------------------------------------------------- pure python (scalar)
def splitmix64_int(z: int) -> int:
    z = (z + _C0) & _MASK64
    z = ((z ^ (z >> 30)) * _C1) & _MASK64
    z = ((z ^ (z >> 27)) * _C2) & _MASK64
    return z ^ (z >> 31)


def counter_uniform_int(seed: int, stream: int, step: int, pos: int, col: int) -> float:
    h = splitmix64_int(seed & _MASK64)
    for v in (stream, step, pos, col):
        h = splitmix64_int(h ^ (v & _MASK64))
    return ((h >> 11) + 0.5) * 2.0 ** -53


# ---------------------------------------------------------------- numpy (canonical)
def _u64(v) -> np.ndarray:
    if isinstance(v, (int, np.integer)):
        return np.uint64(int(v) & _MASK64)
    return np.asarray(v).astype(np.uint64)


def splitmix64(z):
    """splitmix64 on numpy uint64 arrays (or scalars)."""
    with np.errstate(over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        z = _u64(z) + np.uint64(_C0)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_C1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_C2)
        return z ^ (z >> np.uint64(31))


def counter_uniform(seed, stream, step, pos, col) -> np.ndarray:
    """Uniforms in (0, 1), float64; every argument may be an int or a uint64 array
    (broadcast together)."""
    h = splitmix64(_u64(seed))
    h = splitmix64(h ^ _u64(stream))
    h = splitmix64(h ^ _u64(step))
    h = splitmix64(h ^ _u64(pos))
    h = splitmix64(h ^ _u64(col))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53


def uniform_rows_numpy(seed: int, stream: int, step: int, positions, ncols: int) -> np.ndarray:
    """[len(positions), ncols] float64 uniforms: row r is position positions[r], column c is col c."""
    pos = np.asarray(positions, dtype=np.uint64).reshape(-1, 1)
    cols = np.arange(ncols, dtype=np.uint64).reshape(1, -1)
    return counter_uniform(seed, stream, step, pos, cols)


# ---------------------------------------------------------------- torch (any device)
def _s64(c: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    c &= _MASK64
    return c - (1 << 64) if c >= (1 << 63) else c


def _lsr(x, s: int):
    """Logical right shift of int64 tensors (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _splitmix64_torch(z):
    z = z + _s64(_C0)
    z = (z ^ _lsr(z, 30)) * _s64(_C1)
    z = (z ^ _lsr(z, 27)) * _s64(_C2)
    return z ^ _lsr(z, 31)


def uniform_rows_torch(seed: int, stream: int, step: int, positions, ncols: int, device="cpu"):
    """Same numbers as uniform_rows_numpy, computed with torch int64 on `device`."""
    import torch

    pos = torch.as_tensor(positions, dtype=torch.int64, device=device).reshape(-1, 1)
    cols = torch.arange(ncols, dtype=torch.int64, device=device).reshape(1, -1)
    h = _splitmix64_torch(torch.tensor(_s64(seed), dtype=torch.int64, device=device))
    h = _splitmix64_torch(h ^ _s64(stream))
    h = _splitmix64_torch(h ^ _s64(step))
    h = _splitmix64_torch(h ^ pos)
    h = _splitmix64_torch(h ^ cols)
    return (_lsr(h, 11).to(torch.float64) + 0.5) * 2.0 ** -53


def uniform_rows(seed: int, stream: int, step: int, positions, ncols: int, device="cpu"):
    """A float64 torch tensor [len(positions), ncols] on `device` (numpy on CPU, torch elsewhere)."""
    import torch

    if str(device) == "cpu":
        return torch.from_numpy(uniform_rows_numpy(seed, stream, step, positions, ncols))
    return uniform_rows_torch(seed, stream, step, positions, ncols, device)


# ---------------------------------------------------------------- self-test
def _bits(x: float) -> str:
    return "0x%016x" % struct.unpack("<Q", struct.pack("<d", float(x)))[0]


TEST_VECTORS = [
    # (args, expected float64 bit pattern)
    ((42, GUMBEL, 3, 7, 11), "0x3fee00467c36366c"),
    ((42, REMASK, 3, 7, 0), "0x3feb64589a4b9a98"),
    ((0, GUMBEL, 0, 0, 0), "0x3fef358dc66f85e2"),
    ((2**64 - 1, REMASK, 2**32, 123456789, 126335), "0x3fed7e6279348792"),
]
SPLITMIX64_0 = 0xE220A8397B1DCDAF


def self_test(verbose: bool = True) -> None:
    assert splitmix64_int(0) == SPLITMIX64_0, hex(splitmix64_int(0))
    assert int(splitmix64(0)) == SPLITMIX64_0
    for args, want in TEST_VECTORS:
        a = counter_uniform_int(*args)
        b = float(counter_uniform(*args))
        assert _bits(a) == _bits(b), (args, a, b)
        assert _bits(a) == want, f"counter_uniform{args} = {_bits(a)}, expected {want}"
        if verbose:
            print(f"counter_uniform{args} = {a:.17g}  bits {_bits(a)}")
    if verbose:
        print(f"splitmix64(0) = 0x{SPLITMIX64_0:016x}")
    # numpy vs scalar vs torch over a grid
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 2**31, size=7)
    U = uniform_rows_numpy(123, GUMBEL, 5, pos, 300)
    for r in (0, 6):
        for c in (0, 1, 299):
            assert U[r, c] == counter_uniform_int(123, GUMBEL, 5, int(pos[r]), c)
    try:
        import torch  # noqa: F401

        T = uniform_rows_torch(123, GUMBEL, 5, pos, 300).numpy()
        assert np.array_equal(T, U), "torch and numpy noise differ"
        Tb = uniform_rows_torch(2**64 - 1, REMASK, 2**32, [123456789], 126336).numpy()
        assert _bits(Tb[0, 126335]) == TEST_VECTORS[3][1]
    except ImportError:
        pass
    assert U.min() > 0.0 and U.max() < 1.0
    if verbose:
        print("noise self-test: ok (python int, numpy and torch agree)")


if __name__ == "__main__":
    self_test()
