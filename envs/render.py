"""What a day looks like: the env's ``render()`` for ``render_mode="ansi"`` (a text table) and ``"rgb_array"``
(a picture), both drawn from the state and the last action only.

* ``ansi``: the day, on hand / target per warehouse and SKU, units in transit per warehouse, today's demand
  per region and SKU (units in lots), closed lanes, and the last day's reward terms (USD).
* ``rgb_array``: ``uint8 [H, W, 3]``; left, on-hand units per warehouse and SKU (bars) with the Eq.5
  targets (ticks); right, the units the last action shipped per delivery lane and the units it asked to
  send per transfer lane.
"""

from __future__ import annotations

import numpy as np

from envs.dynamics import lots_shipped
from envs.reward import TERM_NAMES

FIGURE_INCHES = (9.6, 4.0)
FIGURE_DPI = 80  # 768 x 320 pixels


def routed_units(env, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Units the action ships per delivery lane ``[D]`` (exactly what the env will ship: the same rule) and the
    units it asks to send per transfer lane ``[L]``, on the env's current day (call before ``step``)."""
    net, layout, st = env.net, env.layout, env.state
    lots, transfers = layout.split(np.asarray(action, dtype=np.int64))
    sent, lane = lots_shipped(net, env.trace.lots[st.day], env.realization.delivery_open[st.day], st.on_hand, lots)
    by_lane = np.zeros(net.D, dtype=np.int64)
    np.add.at(by_lane, lane[lane >= 0], sent[lane >= 0])
    by_transfer = np.zeros(net.L, dtype=np.int64)
    units = net.transfer_qty_table[np.arange(net.L * net.K), transfers]
    np.add.at(by_transfer, net.transfer_slot_lane, units)
    return by_lane, by_transfer


def ansi_frame(env) -> str:
    scen, net, st = env.scenario, env.net, env.state
    skus = [k.name for k in scen.skus]
    width = max(8, *(len(s) for s in skus))
    lines = [f"{scen.name}  day {st.day} of {net.T}  (seed {env.episode_seed})"]
    head = f"{'warehouse':<14}" + "".join(f"{s[:width]:>{width + 2}}" for s in skus) + f"{'in transit':>12}"
    lines += ["on hand / target", head]
    en_route = st.en_route
    for w, wh in enumerate(scen.warehouses):
        cells = "".join(f"{f'{st.on_hand[w, k]}/{net.target_stock[w, k]}':>{width + 2}}" for k in range(net.K))
        lines.append(f"{wh.name[:14]:<14}{cells}{int(en_route[w]):>12}")
    if st.day < net.T:
        demand = env.trace.lots[st.day].reshape(net.R, net.K, net.J).sum(axis=2)
        lines += ["demand today (units)", f"{'region':<14}" + "".join(f"{s[:width]:>{width + 2}}" for s in skus)]
        for r, reg in enumerate(scen.regions):
            lines.append(f"{reg.name[:14]:<14}" + "".join(f"{int(demand[r, k]):>{width + 2}}" for k in range(net.K)))
        closed = [env.lane_labels[d] for d in np.flatnonzero(~env.realization.delivery_open[st.day])]
        closed += [
            f"{scen.transfer_lanes[i].origin}->{scen.transfer_lanes[i].destination} (transfer)"
            for i in np.flatnonzero(~env.realization.transfer_open[st.day])
        ]
        lines.append("closed today: " + (", ".join(closed) if closed else "none"))
    else:
        lines.append("episode over")
    if env.last_terms is not None:
        terms = ", ".join(f"{name} {env.last_terms[name]:.2f}" for name in TERM_NAMES)
        lines.append(f"last day (USD): {terms}")
    return "\n".join(lines) + "\n"


def rgb_frame(env) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # drawn off screen, whatever the backend
    from matplotlib.figure import Figure

    scen, net, st = env.scenario, env.net, env.state
    fig = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
    canvas = FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(net.W)
    width = 0.8 / net.K
    for k, sku in enumerate(scen.skus):
        pos = x - 0.4 + (k + 0.5) * width
        left.bar(pos, st.on_hand[:, k], width, label=sku.name)
        scored = net.target_stock[:, k] > 0
        left.scatter(pos[scored], net.target_stock[scored, k], marker="_", color="black", s=120, zorder=3)
    left.set_xticks(x, [w.name for w in scen.warehouses], rotation=30, ha="right", fontsize=7)
    left.set_ylabel("units on hand (tick: Eq.5 target)")
    left.set_title(f"{scen.name}, day {st.day} of {net.T}", fontsize=9)
    if net.K <= 8:
        left.legend(fontsize=6, ncol=2)
    lanes, transfers = env.last_routed if env.last_routed is not None else (np.zeros(net.D), np.zeros(net.L))
    labels = list(env.lane_labels) + [f"{t.origin}->{t.destination} transfer" for t in scen.transfer_lanes]
    values = np.concatenate([lanes, transfers]).astype(float)
    keep = np.flatnonzero(values > 0)
    keep = keep[np.argsort(-values[keep], kind="stable")[:24]]  # the 24 largest: a busy picture stays legible
    colors = ["tab:blue"] * net.D + ["tab:orange"] * net.L
    right.barh(np.arange(len(keep)), values[keep], color=[colors[i] for i in keep])
    right.set_yticks(np.arange(len(keep)), [labels[i] for i in keep], fontsize=6)
    right.invert_yaxis()
    right.set_xlabel("units, last action, largest 24 (blue: lots shipped, orange: transfers asked)", fontsize=7)
    if not len(keep):
        right.text(0.5, 0.5, "nothing shipped yet", ha="center", va="center", transform=right.transAxes)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
