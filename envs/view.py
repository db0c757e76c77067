"""DayView: exactly what a dispatcher knows at the start of a day (information parity).

Every policy (heuristics, rolling-horizon MILP, learned agents through the
observation) decides from this and the scenario; none reads the realization.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.layout import ActionLayout


@dataclass(frozen=True)
class DayView:
    day: int  # index of the day to decide, 0..T-1
    on_hand: np.ndarray  # [W, K] int, units on hand after today's arrivals
    pipeline: np.ndarray  # [H, W, K] int, transfer units arriving in 1..H days
    lots: np.ndarray  # [R*K*J] int, today's lot sizes in slot order
    delivery_open: np.ndarray  # [D] bool, lane open today
    transfer_open: np.ndarray  # [L] bool, lane open today
    lot_mask: np.ndarray  # [R*K*J, 1 + max lanes] bool, each choice feasible alone
    transfer_mask: np.ndarray  # [L*K, max levels] bool, each level feasible alone
    layout: ActionLayout  # which slots the env id's action holds

    @property
    def routes(self) -> bool:
        """The action holds lot slots."""
        return self.layout.routes

    @property
    def transfers(self) -> bool:
        """The action holds transfer slots."""
        return self.layout.transfers

    def action(self, lot_choice: np.ndarray | None, transfer_choice: np.ndarray | None) -> np.ndarray:
        """Assemble the env action from the parts the env id expects (the others are ignored)."""
        return self.layout.assemble(lot_choice, transfer_choice)

    def action_mask(self) -> np.ndarray:
        """The flat mask ``env.action_masks()`` returns at this moment (bool, ``sum(nvec)``)."""
        return self.layout.flat_mask(self.lot_mask, self.transfer_mask)
