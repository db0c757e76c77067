"""Decision modes and the action layout: which slots an env id's action holds, and how they are laid out.

One :class:`ActionLayout` per (network, decision mode) is the single place that knows the
``MultiDiscrete`` vector's shape: its ``nvec``, which slots are lots and which transfers, the
fixed routing rule that fills the lot slots an id does not expose, how an action splits into
its parts and is assembled from them, and how the per-slot masks flatten into the sb3-contrib
mask. The env, the MILPs (their plans), the heuristics and the agents all go through it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # annotations only
    from envs.network import Network

Decisions = Literal["both", "routing", "transfers"]
DECISIONS: tuple[str, ...] = ("both", "routing", "transfers")
# the registered ids and the decision mode of each (envs/__init__.py registers them)
ENV_IDS: dict[str, str] = {
    "CrossBorderDispatch-v0": "both",
    "CrossBorderRouting-v0": "routing",
    "CrossBorderTransfer-v0": "transfers",
}


def check_decisions(decisions: str) -> str:
    if decisions not in DECISIONS:
        raise ValueError(f"decisions={decisions!r} is not allowed; allowed: {list(DECISIONS)}")
    return decisions


def decisions_of(env_id: str) -> str:
    """The decision mode of a registered env id, with a clear error otherwise."""
    if env_id not in ENV_IDS:
        raise ValueError(f"env_id={env_id!r} is not allowed; allowed: {list(ENV_IDS)}")
    return ENV_IDS[env_id]


@dataclass(frozen=True, eq=False)
class ActionLayout:
    """The action of one decision mode on one network: lot slots first (if routed), then transfer slots.

    Full-size choice arrays are ``lot_choice`` ``[R*K*J]`` (0 = reject, ``i`` = the region's ``i``-th
    lane) and ``transfer_choice`` ``[L*K]`` (level index); an action holds the parts its mode decides.
    """

    decisions: str
    routes: bool  # the action holds the lot slots (else each lot goes to its home lane, the fixed rule)
    transfers: bool  # the action holds the transfer slots (else nothing is transferred)
    n_lot_slots: int  # lot slots in the action: R*K*J or 0
    n_transfer_slots: int  # transfer slots in the action: L*K or 0
    nvec: np.ndarray  # [n_lot_slots + n_transfer_slots] choices per slot
    fixed_lot_choice: np.ndarray  # [R*K*J] what an unrouted action ships: the home lane of each lot
    fixed_transfer_choice: np.ndarray  # [L*K] what an action without transfers sends: level 0
    lot_columns: np.ndarray  # [R*K*J, 1 + max lanes] bool, the columns of the lot mask table that are choices
    transfer_columns: np.ndarray  # [L*K, max levels] bool, the columns of the transfer mask table that are choices
    _flat_index: tuple[np.ndarray, np.ndarray] = ()  # positions of those columns in the raveled tables
    _positions: tuple[np.ndarray, np.ndarray] = ()  # see flat_positions

    @property
    def size(self) -> int:
        return int(self.nvec.size)

    def split(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(lot_choice [R*K*J], transfer_choice [L*K])`` of an action, the undecided part filled by the rule."""
        lots = action[: self.n_lot_slots] if self.routes else self.fixed_lot_choice
        transfers = action[self.n_lot_slots :] if self.transfers else self.fixed_transfer_choice
        return lots, transfers

    def assemble(self, lot_choice: np.ndarray | None, transfer_choice: np.ndarray | None) -> np.ndarray:
        """The action (int64) from full-size parts; the parts this mode does not decide are ignored (may be None)."""
        parts = []
        if self.routes:
            parts.append(np.asarray(lot_choice, dtype=np.int64).reshape(-1))
        if self.transfers:
            parts.append(np.asarray(transfer_choice, dtype=np.int64).reshape(-1))
        return np.concatenate(parts)

    def flat_mask(self, lot_mask: np.ndarray | None, transfer_mask: np.ndarray | None) -> np.ndarray:
        """The sb3-contrib flat mask (bool, ``[..., sum(nvec)]``) from the per-slot tables (``[..., R*K*J, C]``,
        ``[..., L*K, V]``, any leading batch axes); a table this mode does not decide is ignored (may be None)."""
        parts = []
        if self.routes:
            parts.append(lot_mask.reshape(*lot_mask.shape[:-2], -1)[..., self._lot_flat])
        if self.transfers:
            parts.append(transfer_mask.reshape(*transfer_mask.shape[:-2], -1)[..., self._transfer_flat])
        return np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    @property
    def _lot_flat(self) -> np.ndarray:
        return self._flat_index[0]

    @property
    def _transfer_flat(self) -> np.ndarray:
        return self._flat_index[1]

    @functools.cached_property
    def _nvec_unsigned(self) -> np.ndarray:
        return self.nvec.astype(np.uint64)

    @property
    def flat_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lot [R*K*J, C], transfer [L*K, V])`` int: each choice's position in the flat mask, -1 where the
        column is no choice of this action (what :func:`envs.kernels.flatten_masks` reads)."""
        return self._positions

    def check(self, action, batch: int | None = None) -> np.ndarray:
        """The action(s) as int64, checked: shape ``[n]`` (or ``[batch, n]``), whole numbers, each entry in
        ``[0, nvec)``; otherwise a ``ValueError`` naming the first bad entry. Nothing is clipped."""
        shape = self.nvec.shape if batch is None else (batch, self.size)
        if type(action) is np.ndarray and action.dtype == np.int64 and action.shape == shape:
            # the common case, checked with one comparison (a negative entry is a huge unsigned one)
            if not (action.view(np.uint64) >= self._nvec_unsigned).any():
                return action
        a = np.asarray(action)
        if a.shape != shape:
            what = "action" if batch is None else f"actions of a batch of {batch}"
            raise ValueError(f"{what} has shape {a.shape}; expected {shape} (one entry per slot, see the docstring)")
        if a.dtype.kind not in "iu":
            # whole floats (e.g. from a float policy head) are accepted; anything else is an error
            if not (a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a))):
                raise ValueError(f"action must hold integers (whole numbers), got dtype {a.dtype}")
        a = a.astype(np.int64, copy=False)
        if (a < 0).any() or (a >= self.nvec).any():
            bad = np.argwhere((a < 0) | (a >= self.nvec))
            where = tuple(int(i) for i in bad[0])
            slot = where[-1]
            name = f"action[{slot}]" if batch is None else f"actions[{where[0]}, {slot}]"
            allowed = f"0..{int(self.nvec[slot]) - 1}"
            raise ValueError(f"{name}={int(a[where])} is out of range; allowed: {allowed} ({len(bad)} bad entries)")
        return a


@functools.lru_cache(maxsize=64)
def action_layout(net: Network, decisions: str) -> ActionLayout:
    """The layout of ``decisions`` on ``net`` (built once per pair; ``Network`` hashes by identity)."""
    check_decisions(decisions)
    routes, transfers = decisions in ("both", "routing"), decisions in ("both", "transfers")
    nvec = [net.lot_nvec] if routes else []
    nvec += [net.transfer_nvec] if transfers else []
    lot_columns = np.arange(net.lot_lane_table.shape[1])[None, :] < net.lot_nvec[:, None]
    return ActionLayout(
        decisions=decisions,
        routes=routes,
        transfers=transfers,
        n_lot_slots=net.n_lots if routes else 0,
        n_transfer_slots=net.L * net.K if transfers else 0,
        nvec=np.concatenate(nvec).astype(np.int64) if nvec else np.zeros(0, dtype=np.int64),
        fixed_lot_choice=net.lot_home_choice,
        fixed_transfer_choice=_read_only(np.zeros(net.L * net.K, dtype=np.int64)),
        lot_columns=lot_columns,
        transfer_columns=net.transfer_level_valid,
        _flat_index=(np.flatnonzero(lot_columns.ravel()), np.flatnonzero(net.transfer_level_valid.ravel())),
        _positions=_positions(
            lot_columns if routes else None,
            net.transfer_level_valid if transfers else None,
            lot_columns.shape,
            net.transfer_level_valid.shape,
        ),
    )


def _positions(lot_columns, transfer_columns, lot_shape, transfer_shape) -> tuple[np.ndarray, np.ndarray]:
    lot = np.full(lot_shape, -1, dtype=np.int64)
    transfer = np.full(transfer_shape, -1, dtype=np.int64)
    n = 0
    if lot_columns is not None:
        n = int(lot_columns.sum())
        lot[lot_columns] = np.arange(n)
    if transfer_columns is not None:
        transfer[transfer_columns] = n + np.arange(int(transfer_columns.sum()))
    return lot, transfer


def _read_only(x: np.ndarray) -> np.ndarray:
    x.flags.writeable = False
    return x
