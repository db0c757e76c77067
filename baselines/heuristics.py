"""Heuristic policies: the floors every learned policy must clear.

All decide from today's :class:`envs.view.DayView` and the scenario only.
"""

from __future__ import annotations

import numpy as np

from envs.forecast import expected_demand
from envs.scenario import Scenario, load_scenario
from envs.view import DayView


class RandomPolicy:
    """Uniform among the choices the mask allows, per slot; seeded per episode."""

    name = "random"

    def __init__(self, scenario: Scenario | str) -> None:
        self.scenario = load_scenario(scenario)
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, view: DayView) -> np.ndarray:
        return view.action(_random_choice(self.rng, view.lot_mask), _random_choice(self.rng, view.transfer_mask))


def _random_choice(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    # pick uniformly among True columns of each row: argmax of random keys on allowed columns
    keys = np.where(mask, rng.random(mask.shape), -1.0)
    return keys.argmax(axis=1)


class _RuleBased:
    """Shared parts: routing rule + transfer rule, each switched off when the env id has no such slots."""

    name = "rule"

    def __init__(self, scenario: Scenario | str) -> None:
        self.scenario = load_scenario(scenario)
        self.net = self.scenario.network
        self.mean_demand = expected_demand(self.scenario)  # [T, R, K]

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: np.ndarray, view: DayView) -> np.ndarray:
        lots = self.route(view) if view.routes else None
        transfers = self.transfer(view) if view.transfers else None
        return view.action(lots, transfers)

    def route(self, view: DayView) -> np.ndarray:
        return np.zeros(self.net.n_lots, dtype=np.int64)

    def transfer(self, view: DayView) -> np.ndarray:
        return np.zeros(self.net.L * self.net.K, dtype=np.int64)  # no transfers


class GreedyPolicy(_RuleBased):
    """Each lot, in slot order, to the open lane with stock left whose expected Eq.1 + Eq.4 cost per unit
    is lowest, if shipping beats losing it (cost < unit profit + lost-sale penalty); no transfers."""

    name = "greedy"

    def route(self, view: DayView) -> np.ndarray:
        net = self.net
        table = net.lot_lane_table
        lane = np.where(table >= 0, table, 0)
        cost = np.where(view.lot_mask, net.dl_expected_unit_cost[lane], np.inf)
        cost[:, 0] = np.inf
        worth = net.unit_profit[net.lot_sku] + net.lost_penalty[net.lot_sku]
        remaining = view.on_hand.copy()
        choice = np.zeros(net.n_lots, dtype=np.int64)
        for slot in np.flatnonzero(view.lots > 0):
            k, n = net.lot_sku[slot], view.lots[slot]
            for c in np.argsort(cost[slot], kind="stable"):
                if not np.isfinite(cost[slot, c]) or cost[slot, c] >= worth[slot]:
                    break
                w = net.dl_warehouse[lane[slot, c]]
                if remaining[w, k] >= n:
                    remaining[w, k] -= n
                    choice[slot] = c
                    break
        return choice


class HomeWarehousePolicy(_RuleBased):
    """Each lot to its region's home lane (nearest warehouse) when the mask allows it, else reject;
    no transfers."""

    name = "home"

    def route(self, view: DayView) -> np.ndarray:
        net = self.net
        home = net.lot_home_choice
        return np.where(view.lot_mask[np.arange(net.n_lots), home], home, 0)


class BaseStockPolicy(GreedyPolicy):
    """Base-stock (order-up-to) transfers, see :func:`base_stock_transfers`, with greedy routing."""

    name = "base-stock"

    def transfer(self, view: DayView) -> np.ndarray:
        return base_stock_transfers(self.net, self.mean_demand, view)


def base_stock_transfers(net, mean_demand: np.ndarray, view: DayView) -> np.ndarray:
    """Order-up-to transfers: raise each destination's position (on hand + pipeline) of each SKU towards
    ``I* + expected demand of the regions it serves by home lane, over the lane's expected lead time``,
    with the largest level the mask allows that is not above the gap nor above the origin's stock in
    excess of its own I*. Lanes are served in order.
    """
    choice = np.zeros(net.L * net.K, dtype=np.int64)
    position = view.on_hand + view.pipeline.sum(axis=0)  # [W, K]
    spare = view.on_hand - net.target_stock  # [W, K] origin stock above its own target
    home_wh = net.dl_warehouse[net.home_lane]  # [R]
    t = view.day
    for l in range(net.L):
        o, d = net.tl_origin[l], net.tl_destination[l]
        lead = int(np.ceil(net.tl_expected_lead[l]))
        need = mean_demand[t : t + lead][:, home_wh == d].sum(axis=(0, 1))  # [K]
        for k in range(net.K):
            slot = l * net.K + k
            gap = net.target_stock[d, k] + need[k] - position[d, k]
            allowed = view.transfer_mask[slot] & (net.transfer_qty_table[slot] <= min(gap, spare[o, k]))
            level = int(np.flatnonzero(allowed)[-1]) if allowed.any() else 0
            q = net.transfer_qty_table[slot, level]
            choice[slot] = level
            position[d, k] += q
            spare[o, k] -= q
    return choice


HEURISTICS = {cls.name: cls for cls in (RandomPolicy, GreedyPolicy, HomeWarehousePolicy, BaseStockPolicy)}
