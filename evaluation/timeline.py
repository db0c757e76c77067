"""Episode timelines: what each policy did, day by day, on one seed, beside the hindsight optimum.

:func:`episode_timeline` plays a policy through :func:`evaluation.episode.run_episode` (the one episode loop)
with a recorder around it, and returns one row per day:

* ``on_hand:<warehouse>``: units on hand (all SKUs) at the start of the day, after its arrivals;
* ``shipped:<mode>``: units shipped that day by each delivery mode (air, sea, express, ...), by the env's
  own shipping rule (:func:`envs.dynamics.lots_shipped`);
* ``units_demanded``, ``units_shipped``, ``units_transferred`` (sent that day), ``reward`` (USD).

:func:`write_timelines` writes ``timeline/seed_<s>.csv`` (every policy, long by policy and day) and
``timeline/seed_<s>.png`` (one panel per warehouse's stock, per mode's shipments, and transfers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from envs.dynamics import lots_shipped
from envs.files import atomic_target
from evaluation.episode import run_episode
from evaluation.policies import HINDSIGHT


class _Recorder:
    """Wraps a policy: before each decision, notes the day's stock and what the decision ships."""

    def __init__(self, policy, env) -> None:
        self.policy, self.env = policy, env.unwrapped
        self.name = getattr(policy, "name", "policy")
        self.rows: list[dict] = []

    def reset(self, seed: int | None = None) -> None:
        self.rows = []
        self.policy.reset(seed)

    def act(self, obs: np.ndarray, view):
        action = self.policy.act(obs, view)
        net, env = self.env.net, self.env
        lots, _ = env.layout.split(np.asarray(action, dtype=np.int64))
        sent, lane = lots_shipped(net, view.lots, view.delivery_open, view.on_hand, lots)
        row = {"day": view.day, "transferred_before": env.state.kpi["units_transferred"]}
        row.update({f"on_hand:{w.name}": int(view.on_hand[i].sum()) for i, w in enumerate(env.scenario.warehouses)})
        modes = sorted({ln.mode for ln in env.scenario.delivery_lanes})
        for mode in modes:
            row[f"shipped:{mode}"] = 0
        for s in np.flatnonzero(lane >= 0):
            row[f"shipped:{env.scenario.delivery_lanes[lane[s]].mode}"] += int(sent[s])
        row["units_demanded"] = int(view.lots.sum())
        row["units_shipped"] = int(sent.sum())
        self.rows.append(row)
        return action


def episode_timeline(env, policy, seed: int, label: str | None = None) -> pd.DataFrame:
    """One row per day of ``policy`` on ``seed`` (columns in the module docstring), plus ``policy`` and ``seed``."""
    recorder = _Recorder(policy, env)
    result = run_episode(env, recorder, seed, record=True)
    frame = pd.DataFrame(recorder.rows)
    after = np.append(frame["transferred_before"].to_numpy()[1:], env.unwrapped.state.kpi["units_transferred"])
    frame["units_transferred"] = (after - frame["transferred_before"].to_numpy()).astype(np.int64)
    frame["reward"] = np.asarray(result.rewards, dtype=np.float64)
    frame = frame.drop(columns="transferred_before")
    frame.insert(0, "seed", int(seed))
    frame.insert(0, "policy", label or recorder.name)
    return frame


def write_timelines(folder: Path, frames: dict[int, pd.DataFrame]) -> list[Path]:
    """``seed_<s>.csv`` and ``seed_<s>.png`` per seed in ``folder`` (each written whole or not at all)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for seed, frame in frames.items():
        with atomic_target(folder / f"seed_{seed}.csv") as tmp:
            frame.to_csv(tmp, index=False)
        with atomic_target(folder / f"seed_{seed}.png") as tmp:
            plot_timeline(frame, f"seed {seed}").savefig(tmp, format="png", dpi=90)
        written += [folder / f"seed_{seed}.csv", folder / f"seed_{seed}.png"]
    return written


def plot_timeline(frame: pd.DataFrame, title: str):
    """A figure: a panel per warehouse (stock at the start of each day), per delivery mode (units shipped)
    and one for transfers sent; a line per policy, the hindsight optimum dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stock = [c for c in frame.columns if c.startswith("on_hand:")]
    shipped = [c for c in frame.columns if c.startswith("shipped:")]
    panels = [*stock, *shipped, "units_transferred"]
    cols = 4
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, column in zip(axes, panels, strict=False):
        for policy, part in frame.groupby("policy", sort=False):
            optimum = {"linestyle": "--", "color": "black"} if policy == HINDSIGHT else {}
            ax.plot(part["day"], part[column], label=policy, linewidth=1.2, **optimum)
        what = column.split(":", 1)
        ax.set_title(
            f"on hand, {what[1]}" if what[0] == "on_hand" else f"shipped by {what[1]}" if len(what) == 2
            else "units transferred", fontsize=8,
        )  # fmt: skip
        ax.tick_params(labelsize=7)
        ax.set_xlabel("day", fontsize=7)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
