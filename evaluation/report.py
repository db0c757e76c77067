"""Statistics, tables and plots of an evaluation (the files ``evaluate.py`` writes after its rows).

Inputs are the rows of :mod:`evaluation.runner` (one per policy x seed, the hindsight MILP's
included). Money is USD over one episode; rates are fractions in [0, 1] except in the
Table 3 form, which shows percentages as the paper does.

* ratio to the optimum of a row: ``1 - (G_h - G_p) / |G_h|`` with ``G_h`` the hindsight return
  of the same seed (:func:`evaluation.metrics.ratio_to_optimum`, DESIGN.md section 5); at most 1
  when the MILP is proven optimal, NaN when ``G_h == 0``;
* confidence intervals: percentile bootstrap of the mean over seeds, ``resamples`` draws from a
  generator seeded by ``(seed, crc32(policy))``, so a policy's interval does not depend on
  which other policies are in the run;
* interquartile mean (IQM): the mean of the middle half of the seeds (``floor(n/4)`` cut from
  each end, as ``scipy.stats.trim_mean(x, 0.25)``);
* win rate of A against B: the share of seeds where A's return beats B's, ties counting half.
"""

from __future__ import annotations

import io
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from envs.dynamics import KPI_NAMES
from envs.files import write_atomic
from envs.reward import TERM_LABELS, TERM_NAMES, TERM_SIGN
from evaluation.metrics import bootstrap_mean_ci, interquartile_mean, ratio_to_optimum
from evaluation.policies import HINDSIGHT
from evaluation.runner import ROW_COLUMNS

EPISODE_COLUMNS = (*ROW_COLUMNS[: ROW_COLUMNS.index("steps")], "hindsight_return", "ratio_to_optimum",
                   "ratio_to_bound", *ROW_COLUMNS[ROW_COLUMNS.index("steps"):])  # fmt: skip
TIE_RTOL = 1e-9  # returns this close (relative) are a tie in win rates
# (label, episodes column, scale, decimals shown): the paper's Table 3 indicators first, then the benchmark's own
TABLE3_INDICATORS = (
    ("Transport cost per unit (USD)", "transport_cost_per_unit", 1.0, 2),
    ("Average delivery time (days)", "avg_delivery_days", 1.0, 2),
    ("Abnormal delay rate (%)", "abnormal_delay_rate", 100.0, 1),
    ("On-time rate (%)", "on_time_rate", 100.0, 1),
    ("Fill rate (%)", "fill_rate", 100.0, 1),
    ("Units transferred", "units_transferred", 1.0, 1),
    ("Return per episode (USD)", "return", 1.0, 1),
    ("Ratio to hindsight optimum", "ratio_to_optimum", 1.0, 3),
)
_DECIMALS = {label: decimals for label, _, _, decimals in TABLE3_INDICATORS}
# The paper's own Table 3 (a platform's indicators before and after it deployed multimodal routing), by episodes
# column: (before, after, amplitude of change in % as the paper states it). Its cost is in yuan per unit, ours in
# USD, so only the changes compare; its "compliance rate of transportation sections" is our on-time rate. It has
# no figure for the other indicators (and one, path-switching flexibility, that the benchmark does not model).
PAPER_TABLE3 = {
    "transport_cost_per_unit": (25.4, 20.7, -18.5),
    "avg_delivery_days": (8.2, 6.5, -20.7),
    "abnormal_delay_rate": (12.3, 7.9, -35.8),
    "on_time_rate": (78.4, 89.1, 13.6),
}


# ------------------------------------------------------------------ episodes
def assemble_episodes(rows: list[dict]) -> pd.DataFrame:
    """One row per policy x seed, in the order given, with ``hindsight_return``, ``ratio_to_optimum`` and
    ``ratio_to_bound`` (the same ratio against the hindsight MILP's best bound: equal to ``ratio_to_optimum``
    when the MILP is proven optimal; after a time limit the unknown true ratio lies between the two)."""
    df = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    optimum = df.loc[df["policy"] == HINDSIGHT].set_index("seed")["return"]
    missing = sorted(set(df["seed"]) - set(optimum.index))
    if missing:
        raise ValueError(f"no {HINDSIGHT} row for seeds {missing[:10]}")
    df["hindsight_return"] = df["seed"].map(optimum).astype(float)
    df["ratio_to_optimum"] = ratio_to_optimum(df["return"].to_numpy(), df["hindsight_return"].to_numpy())
    h = df.loc[df["policy"] == HINDSIGHT].set_index("seed")
    bound = h["milp_bound"].astype(float).fillna(h["return"])
    df["ratio_to_bound"] = ratio_to_optimum(df["return"].to_numpy(), df["seed"].map(bound).to_numpy(dtype=float))
    df["milp_status"] = df["milp_status"].fillna("")
    return df[list(EPISODE_COLUMNS)]


def time_limit_note(episodes: pd.DataFrame) -> str | None:
    """A line saying how many hindsight solves stopped at the time limit, and their largest gap (None if none)."""
    h = episodes.loc[episodes["policy"] == HINDSIGHT]
    limited = h.loc[h["milp_status"] != "optimal"]
    if limited.empty:
        return None
    return (
        f"{len(limited)} of {len(h)} hindsight solves stopped at the time limit (largest gap "
        f"{limited['milp_gap'].max():.2%}): ratio_to_optimum is against the best plan found, ratio_to_bound against "
        "the best bound; the true ratio lies between them"
    )


def bound_violations(episodes: pd.DataFrame, rtol: float = 1e-6) -> list[str]:
    """Rows whose return exceeds the hindsight MILP's best bound of the same seed (its objective when no
    bound is reported). None can exist unless the env and the MILP disagree: each is a bug to report."""
    h = episodes.loc[episodes["policy"] == HINDSIGHT].set_index("seed")
    bound = h["milp_bound"].fillna(h["return"]).astype(float)
    others = episodes.loc[episodes["policy"] != HINDSIGHT]
    limit = others["seed"].map(bound)
    bad = others.loc[others["return"] > limit + rtol * np.maximum(1.0, limit.abs())]
    return [
        f"{policy} returns {value:.6f} on seed {seed}, above the hindsight bound {bound[seed]:.6f}"
        for policy, seed, value in zip(bad["policy"], bad["seed"], bad["return"], strict=True)
    ]


# ---------------------------------------------------------------- statistics
def win_rate(a: np.ndarray, b: np.ndarray) -> float:
    """Share of paired seeds where ``a`` beats ``b`` (ties, within ``TIE_RTOL``, count half)."""
    tol = TIE_RTOL * np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
    wins = (a - b > tol).astype(float) + 0.5 * (np.abs(a - b) <= tol)
    return float(wins.mean())


def summarize(episodes: pd.DataFrame, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per policy (in episode order): mean, CI and IQM of the return and of the ratio to the optimum,
    mean reward terms and KPIs, decision time, and the win rate against every other policy."""
    labels = list(dict.fromkeys(episodes["policy"]))
    by_policy = {p: episodes.loc[episodes["policy"] == p].set_index("seed") for p in labels}
    out = []
    for label in labels:
        df = by_policy[label]
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        state = rng.bit_generator.state
        ret_lo, ret_hi = bootstrap_mean_ci(df["return"].to_numpy(), rng, resamples, confidence)
        rng.bit_generator.state = state  # the same resamples for both statistics
        ratio_lo, ratio_hi = bootstrap_mean_ci(df["ratio_to_optimum"].to_numpy(), rng, resamples, confidence)
        row = {
            "policy": label,
            "episodes": len(df),
            "mean_return": df["return"].mean(),
            "return_ci_low": ret_lo,
            "return_ci_high": ret_hi,
            "iqm_return": interquartile_mean(df["return"].to_numpy()),
            "std_return": df["return"].std(ddof=1) if len(df) > 1 else np.nan,
            "mean_ratio_to_optimum": df["ratio_to_optimum"].mean(),
            "ratio_ci_low": ratio_lo,
            "ratio_ci_high": ratio_hi,
            "iqm_ratio_to_optimum": interquartile_mean(df["ratio_to_optimum"].to_numpy()),
            "mean_ratio_to_bound": df["ratio_to_bound"].mean(),
        }
        row.update({f"mean_{name}": df[name].mean() for name in (*TERM_NAMES, *KPI_NAMES)})
        row["decision_ms_per_step"] = 1000.0 * df["decision_seconds_per_step"].mean()
        for other in labels:
            paired = by_policy[other]["return"].reindex(df.index).to_numpy()
            row[f"win_rate_vs_{other}"] = np.nan if other == label else win_rate(df["return"].to_numpy(), paired)
        out.append(row)
    return pd.DataFrame(out)


def compare_table(summary: pd.DataFrame, baseline: str, policy: str) -> pd.DataFrame:
    """The paper's Table 3 form: indicator, baseline value, policy value, amplitude of change (%), and the
    paper's own before / after / change beside them (``paper_*`` columns, NaN where the paper has no figure).

    Values are means over seeds; change = ``(policy - baseline) / |baseline| * 100`` (NaN when the
    baseline is 0). Rates are shown in percent, as in the paper. The paper's transport cost is in yuan per
    unit, so for that row only the changes compare.
    """
    s = summary.set_index("policy")
    rows = []
    for indicator, column, scale, _ in TABLE3_INDICATORS:
        name = "mean_ratio_to_optimum" if column == "ratio_to_optimum" else f"mean_{column}"
        b, p = scale * float(s.at[baseline, name]), scale * float(s.at[policy, name])
        change = np.nan if b == 0 or not np.isfinite(b) else 100.0 * (p - b) / abs(b)
        paper = PAPER_TABLE3.get(column, (np.nan, np.nan, np.nan))
        rows.append(
            {"indicator": indicator, "baseline": baseline, "policy": policy,
             "baseline_value": b, "policy_value": p, "change_pct": change,
             "paper_before": paper[0], "paper_after": paper[1], "paper_change_pct": paper[2]}
        )  # fmt: skip
    return pd.DataFrame(rows)


# --------------------------------------------------------------------- plots
def _figure(width: float, height: float):
    """A figure drawn by the Agg backend directly (no pyplot: no window, no global figure state)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def plot_ratio(summary: pd.DataFrame, confidence: float = 0.95) -> bytes:
    """Mean ratio to the hindsight optimum per policy, with its bootstrap interval and the IQM."""
    s = summary.iloc[::-1]  # first policy on top
    y = np.arange(len(s))
    mean = s["mean_ratio_to_optimum"].to_numpy()
    err = np.vstack([mean - s["ratio_ci_low"].to_numpy(), s["ratio_ci_high"].to_numpy() - mean])
    fig, ax = _figure(7, 0.5 * len(s) + 1.4)
    ax.errorbar(mean, y, xerr=np.nan_to_num(err), fmt="o", color="tab:blue", capsize=4,
                label=f"mean, {confidence:.0%} bootstrap CI")  # fmt: skip
    ax.plot(s["iqm_ratio_to_optimum"], y, "x", color="tab:orange", label="interquartile mean")
    ax.axvline(1.0, color="grey", lw=1, ls="--")
    ax.set_yticks(y, s["policy"])
    ax.set_xlabel("ratio to the hindsight optimum  (1 - (G_h - G_p) / |G_h|)")
    ax.set_title(f"Ratio to the optimum, {int(summary['episodes'].max())} seeds")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def plot_decomposition(summary: pd.DataFrame) -> bytes:
    """Mean episode return of each policy split into its reward terms (revenue up, costs down)."""
    x = np.arange(len(summary))
    fig, ax = _figure(1.3 * len(summary) + 3, 4.5)
    up, down = np.zeros(len(summary)), np.zeros(len(summary))
    for name in sorted(TERM_NAMES, key=lambda n: -TERM_SIGN[n]):  # revenue first, then the costs in order
        part = TERM_SIGN[name] * summary[f"mean_{name}"].to_numpy()
        base = np.where(part >= 0, up, down)
        ax.bar(x, part, bottom=base, label=TERM_LABELS[name], width=0.6)
        up, down = np.where(part >= 0, up + part, up), np.where(part < 0, down + part, down)
    ax.plot(x, summary["mean_return"], "D", color="black", label="return")
    # explicit limits: zero-height stacked bars leave sticky edges that can clip autoscaling
    span = max(up.max() - down.min(), 1.0)
    ax.set_ylim(down.min() - 0.05 * span, up.max() + 0.05 * span)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(x, summary["policy"], rotation=20, ha="right")
    ax.set_ylabel("USD per episode (mean over seeds)")
    ax.set_title("Return decomposition by reward term")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    return _png(fig)


def plot_compare(table: pd.DataFrame) -> bytes:
    """The Table 3 form as an image."""
    baseline, policy = table["baseline"].iat[0], table["policy"].iat[0]
    cells = [[r.indicator, *_fmt_values(r), _fmt_pct(r.change_pct), *_fmt_paper(r)] for r in table.itertuples()]
    fig, ax = _figure(11, 0.3 * len(cells) + 0.3)
    ax.axis("off")
    labels = ["Indicator", baseline, policy, "Amplitude of change", *_PAPER_LABELS]
    grid = ax.table(cellText=cells, colLabels=labels, loc="center", cellLoc="center")
    grid.auto_set_column_width(list(range(len(labels))))
    grid.scale(1.0, 1.3)
    ax.set_title(f"{policy} against {baseline} (means over seeds; the paper's own figures at right, its cost in yuan)")
    return _png(fig)


def _fmt_values(r) -> list[str]:
    """Baseline and policy values of a Table 3 row, with the indicator's decimals."""
    d = _DECIMALS.get(r.indicator, 2)
    return ["n/a" if not np.isfinite(x) else f"{x:,.{d}f}" for x in (r.baseline_value, r.policy_value)]


_PAPER_LABELS = ("paper: before", "paper: after", "paper: change")


def _fmt_paper(r) -> list[str]:
    """The paper's before, after and change of a Table 3 row ("" where the paper has no figure)."""
    if not np.isfinite(r.paper_before):
        return ["", "", ""]
    d = 1  # the paper gives one decimal throughout
    return [f"{r.paper_before:,.{d}f}", f"{r.paper_after:,.{d}f}", _fmt_pct(r.paper_change_pct)]


def _money(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:,.1f}"


def _fmt_pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:+.1f}%"


# -------------------------------------------------------------------- output
def write_report(out: Path, episodes: pd.DataFrame, summary: pd.DataFrame, tables: list[pd.DataFrame]) -> list[Path]:
    """Write every report file into ``out``; files whose bytes would not change are not touched.

    Returns the paths of the report's files (written or already up to date).
    """
    out = Path(out)
    files = {
        "episodes.csv": _csv(episodes),
        "episodes.parquet": _parquet(episodes),
        "summary.csv": _csv(summary),
        "ratio_to_optimum.png": plot_ratio(summary),
        "return_decomposition.png": plot_decomposition(summary),
    }
    for table in tables:
        stem = f"table3_{table['baseline'].iat[0]}_vs_{table['policy'].iat[0]}"
        files[f"{stem}.csv"] = _csv(table)
        files[f"{stem}.png"] = plot_compare(table)
    for name, data in files.items():
        write_atomic(out / name, data, if_changed=True)
    return [out / name for name in files]


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, lineterminator="\n").encode()


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()


def print_report(summary: pd.DataFrame, tables: list[pd.DataFrame], console: Console | None = None) -> None:
    """The summary table (and each Table 3 comparison) on the terminal."""
    console = console or Console(width=None if sys.stdout.isatty() else 150)  # 80 columns squeeze it in logs
    n = int(summary["episodes"].max())
    t = Table(title=f"Mean over {n} seed{'s' if n != 1 else ''} (return in USD per episode)")
    # the ratio to the bound differs from the ratio to the optimum only after time-limited hindsight solves
    to_bound = not np.allclose(summary["mean_ratio_to_bound"], summary["mean_ratio_to_optimum"], equal_nan=True)
    t.add_column("policy")
    for name in ("return", "95% CI", "IQM", "ratio to optimum", "95% CI", *(["ratio to bound"] * to_bound),
                 "fill", "on time", "cost/unit", "ms/step"):  # fmt: skip
        t.add_column(name, justify="right")
    for r in summary.itertuples():
        t.add_row(
            r.policy,
            _money(r.mean_return),
            f"[{_money(r.return_ci_low)}, {_money(r.return_ci_high)}]",
            _money(r.iqm_return),
            f"{r.mean_ratio_to_optimum:.3f}",
            f"[{r.ratio_ci_low:.3f}, {r.ratio_ci_high:.3f}]",
            *([f"{r.mean_ratio_to_bound:.3f}"] * to_bound),
            f"{r.mean_fill_rate:.1%}",
            f"{r.mean_on_time_rate:.1%}",
            f"{r.mean_transport_cost_per_unit:.2f}",
            f"{r.decision_ms_per_step:.2f}",
        )
    console.print(t)
    for table in tables:
        baseline, policy = table["baseline"].iat[0], table["policy"].iat[0]
        c = Table(title=f"Table 3 form: {policy} against {baseline}")
        for name in ("indicator", baseline, policy, "change", *_PAPER_LABELS):
            c.add_column(name, justify="left" if name == "indicator" else "right")
        for r in table.itertuples():
            c.add_row(r.indicator, *_fmt_values(r), _fmt_pct(r.change_pct), *_fmt_paper(r))
        console.print(c)
