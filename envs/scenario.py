"""Scenario: the static, validated description of one cross-border network.

A :class:`Scenario` is plain data (no randomness): warehouses, customer regions,
SKUs, delivery and transfer lanes, supplier shipments, penalty coefficients and
the *models* of demand and transit time. It is loaded from a preset name or a
YAML/JSON file and written back losslessly (``Scenario.from_file(p).to_file(q)``
gives an equal scenario). Everything random in an episode is drawn from it by
:meth:`Scenario.sample`, which returns a :class:`~envs.realization.Realization`.

Units used throughout: money in USD, time in whole days, stock in units (one
customer order is one unit), distances in km.
"""

from __future__ import annotations

import functools
import hashlib
import json
import typing
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError, model_validator

from envs.files import read_yaml, write_atomic
from envs.forecast import expected_demand
from envs.network import Network
from envs.realization import Realization, sample_realization

PRESET_DIR = Path(__file__).parent / "scenarios"


def _json_object(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"duplicate keys {repeated} (each key may appear once)")
    return dict(pairs)


_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # same text as SafeDumper, ~3x faster


def _real(value):
    """A number as such: YAML/JSON ints and floats, not booleans (``true`` is no 1) nor strings."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    return value


# Every number a scenario holds is finite and bounded (a bound named in its message), so no value can
# turn into NaN rewards, overflow an integer or ask for gigabytes: the bounds are far beyond any real network.
MAX_MONEY = 1e7  # USD per unit, order or shipment
MAX_UNITS = 10**9  # stock units
MAX_DAYS = 3650  # horizon, days
MAX_LEAD = 365  # transit, lead and SLA days
MAX_LOT_DAYS = 2 * 10**7  # horizon_days * regions * SKUs * lots_per_batch: the lot slots of an episode
MAX_DAILY_DEMAND = 10**6  # expected units per day of one (region, SKU), after weekly, trend and promotions
Money = Annotated[float, BeforeValidator(_real), Field(ge=0, le=MAX_MONEY, allow_inf_nan=False)]
Units = Annotated[int, Strict(), Field(ge=0, le=MAX_UNITS)]
Day = Annotated[int, Strict(), Field(ge=0, le=MAX_DAYS)]  # a day index
LeadDays = Annotated[int, Strict(), Field(ge=1, le=MAX_LEAD)]
DelayDays = Annotated[int, Strict(), Field(ge=0, le=MAX_LEAD)]
Probability = Annotated[float, BeforeValidator(_real), Field(ge=0, le=1, allow_inf_nan=False)]
Factor = Annotated[float, BeforeValidator(_real), Field(ge=0, le=1000, allow_inf_nan=False)]  # a multiplier
DayRange = Annotated[tuple[LeadDays, LeadDays], Field(description="[min, max] whole days, inclusive")]
PLAIN_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"  # a scenario name is used in file and folder names


class ScenarioError(ValueError):
    """A scenario failed validation; the message names each bad field, its value and what is allowed."""


class _Model(BaseModel):
    # strict about unknown keys so that a typo in a YAML file is an error, not a silent default
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sku(_Model):
    """A stock-keeping unit. Each customer order is one unit of one SKU."""

    name: str = Field(min_length=1, max_length=128)
    unit_profit: Money = Field(description="USD earned per unit sold, before logistics (Eq.2)")
    lost_sale_penalty: Money = Field(description="USD charged per unit of demand not served")


class Warehouse(_Model):
    """A hub (receives supplier shipments) or an overseas warehouse."""

    name: str = Field(min_length=1, max_length=128)
    kind: Literal["hub", "overseas"]
    capacity: Units = Field(
        description="max inventory position (on hand + inbound transfers), all SKUs, units; enforced on "
        "transfers into the warehouse (supplier arrivals at a hub are not capped)"
    )
    initial_stock: dict[str, Units] = Field(default_factory=dict, description="units on hand at day 0, per SKU")
    target_stock: dict[str, Units] = Field(
        default_factory=dict,
        description="I* of Eq.5 per SKU, units; a SKU absent or at 0 is not scored for this warehouse",
    )


class Promotion(_Model):
    """A multiplicative demand spike on days ``start_day..end_day`` (inclusive)."""

    start_day: Day
    end_day: Day
    multiplier: Factor

    @model_validator(mode="after")
    def _ordered(self) -> Promotion:
        if self.end_day < self.start_day:
            raise ValueError(f"end_day={self.end_day} must be >= start_day={self.start_day}")
        return self


class DemandModel(_Model):
    """Expected daily demand ``base_rate * weekly[day % 7] * max(0, 1 + trend * day) * promo(day)``.

    The realized demand is Poisson with that mean, truncated at ``floor(3 * mean + 20)``
    (:func:`envs.realization.demand_cap`, a bound no practical draw reaches), or the mean
    rounded half up when the scenario is ``deterministic``.
    """

    base_rate: Annotated[float, BeforeValidator(_real), Field(ge=0, le=MAX_DAILY_DEMAND, allow_inf_nan=False)] = Field(
        description="expected units per day"
    )
    weekly: tuple[Factor, ...] = Field(default=(1.0,) * 7, description="7 multipliers, day 0 = index 0")
    trend: Annotated[float, BeforeValidator(_real), Field(ge=-1, le=1, allow_inf_nan=False)] = Field(
        default=0.0, description="relative growth per day (0.01 = +1%/day), in [-1, 1]"
    )
    promotions: tuple[Promotion, ...] = ()

    @model_validator(mode="after")
    def _seven_days(self) -> DemandModel:
        if len(self.weekly) != 7:
            raise ValueError(f"weekly must hold exactly 7 multipliers, got {len(self.weekly)}")
        return self


class Region(_Model):
    """A customer region with its delivery SLA and per-SKU demand models."""

    name: str = Field(min_length=1, max_length=128)
    sla_days: LeadDays = Field(description="t0 of Eq.4: promised delivery days (> 0)")
    demand: dict[str, DemandModel] = Field(description="SKU name -> demand model; SKUs absent have no demand")
    home_warehouse: str = Field(description="warehouse of the fixed routing rule (CrossBorderTransfer-v0)")
    home_mode: str = Field(description="mode of the fixed routing rule (CrossBorderTransfer-v0)")


class DeliveryLane(_Model):
    """Lane ``(warehouse, region, mode)`` that ships customer orders.

    Eq.1 cost per unit shipped: ``distance_km * cost_per_km + tau * cost_per_transit_day
    + fee_per_order``, with ``tau`` the realized transit days.
    """

    warehouse: str
    region: str
    mode: str = Field(min_length=1)
    distance_km: Annotated[float, BeforeValidator(_real), Field(ge=0, le=1e5, allow_inf_nan=False)]
    cost_per_km: Money = Field(description="USD per unit per km (c of Eq.1)")
    cost_per_transit_day: Money = Field(description="USD per unit per day in transit (v of Eq.1)")
    fee_per_order: Money = Field(default=0.0, description="customs clearance + last mile, USD per order")
    transit_days: DayRange
    abnormal_delay_prob: Probability = 0.0
    abnormal_delay_days: tuple[DelayDays, DelayDays] = (0, 0)
    closure_prob: Probability = 0.0

    @model_validator(mode="after")
    def _ranges(self) -> DeliveryLane:
        _check_range("transit_days", self.transit_days)
        _check_range("abnormal_delay_days", self.abnormal_delay_days)
        return self


class TransferLane(_Model):
    """Lane ``origin -> destination`` by ``mode`` that moves stock between warehouses.

    Sending ``q > 0`` units contributes ``q * profit_per_unit - (q * cost_per_unit + fixed_cost)``
    to Eq.2 (allocation revenue minus allocation cost m(q)).
    """

    origin: str
    destination: str
    mode: str = Field(min_length=1)
    quantity_levels: tuple[Units, ...] = Field(
        max_length=64, description="allowed units per SKU per day, must contain 0 (at most 64 levels)"
    )
    cost_per_unit: Money
    fixed_cost: Money = Field(default=0.0, description="USD per executed shipment (per SKU)")
    profit_per_unit: Money = Field(default=0.0, description="r of Eq.2: profit increment per unit moved")
    lead_time_days: DayRange
    closure_prob: Probability = 0.0

    @model_validator(mode="after")
    def _levels(self) -> TransferLane:
        levels = self.quantity_levels
        if not levels:
            raise ValueError(
                "quantity_levels is empty; give increasing whole numbers starting with 0, e.g. [0, 10, 25]"
            )
        if levels[0] != 0 or any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
            raise ValueError(f"quantity_levels={list(levels)} must be strictly increasing and start with 0")
        if self.origin == self.destination:
            raise ValueError(f"origin and destination are both {self.origin!r}")
        _check_range("lead_time_days", self.lead_time_days)
        return self


class SupplierShipment(_Model):
    """Replenishment of a hub: ``quantity`` units of ``sku`` every ``period_days`` from ``first_day``.

    The realized quantity is ``round(quantity * (1 + quantity_cv * N(0,1)))`` clipped to
    ``[0, 2 * quantity]`` (exactly ``quantity`` when the scenario is deterministic).
    """

    warehouse: str
    sku: str
    quantity: Units
    first_day: Day = 0
    period_days: Annotated[int, Strict(), Field(ge=1, le=MAX_DAYS)] = 7
    quantity_cv: Annotated[float, BeforeValidator(_real), Field(ge=0, le=10, allow_inf_nan=False)] = 0.0


class Scenario(_Model):
    """A whole network: see the module docstring. Build with :func:`load_scenario`."""

    name: str = Field(pattern=PLAIN_NAME, description="letters, digits and _ . + - (used in file names)")
    description: str = Field(default="", max_length=10_000)
    horizon_days: Annotated[int, Strict(), Field(ge=1, le=MAX_DAYS)]
    lots_per_batch: Annotated[int, Strict(), Field(ge=1, le=100)] = Field(
        description="each day's demand of a (region, SKU) is split into this many lots"
    )
    deterministic: Annotated[bool, Strict()] = Field(
        default=False, description="realization = expectation (no noise, closures, delays)"
    )
    delay_penalty_alpha: Money = Field(description="alpha of Eq.4, USD per unit per day^2 late")
    imbalance_lambda: Money = Field(description="lambda of Eq.5, USD per warehouse-day at unit relative gap")
    skus: tuple[Sku, ...] = Field(min_length=1)
    warehouses: tuple[Warehouse, ...] = Field(min_length=1)
    regions: tuple[Region, ...] = Field(min_length=1)
    delivery_lanes: tuple[DeliveryLane, ...] = Field(min_length=1)
    transfer_lanes: tuple[TransferLane, ...] = ()
    supplier_shipments: tuple[SupplierShipment, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        _check_references(self)
        _check_sizes(self)
        return self

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_dict(cls, data: dict) -> Scenario:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ScenarioError(_format_errors(err)) from None

    @classmethod
    def from_file(cls, path: str | Path) -> Scenario:
        path = Path(path)
        if not path.is_file():
            raise ScenarioError(f"scenario file {str(path)!r} does not exist")
        kind = path.suffix.lstrip(".").upper()
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text, object_pairs_hook=_json_object) if kind == "JSON" else read_yaml(text)
        except UnicodeDecodeError as err:
            raise ScenarioError(f"scenario file {str(path)!r} is not UTF-8 text ({err})") from None
        except RecursionError:
            raise ScenarioError(f"scenario file {str(path)!r} is nested too deeply to be a scenario") from None
        except (ValueError, yaml.YAMLError) as err:  # JSONDecodeError is a ValueError, as are duplicate keys
            raise ScenarioError(f"scenario file {str(path)!r} is not valid {kind}: {err}") from None
        if not isinstance(data, dict):
            raise ScenarioError(f"scenario file {str(path)!r} must hold a mapping at top level")
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_file(self, path: str | Path) -> Path:
        """Write as YAML (or JSON for a ``.json`` suffix); atomic, so a crash leaves no half file."""
        path = Path(path)
        data = self.to_dict()
        text = (
            json.dumps(data, indent=1)
            if path.suffix == ".json"
            else yaml.dump(data, Dumper=_YAML_DUMPER, sort_keys=False)
        )
        write_atomic(path, text)
        return path

    def content_hash(self) -> str:
        """SHA-256 (hex, 16 chars) of the canonical JSON form: the cache key of anything solved on this scenario."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # ----------------------------------------------------------- derived data
    @functools.cached_property
    def network(self) -> Network:
        """Index arrays and coefficients for the environment and the MILPs (computed once per scenario)."""
        return Network.build(self)

    def sample(self, seed: int) -> Realization:
        """Draw the episode's exogenous trace; deterministic per ``seed``, independent of any action."""
        return sample_realization(self, seed)


def _check_range(field: str, pair: tuple[int, int]) -> None:
    if pair[1] < pair[0]:
        raise ValueError(f"{field}={list(pair)} must be [min, max] with min <= max")


def _check_sizes(s: Scenario) -> None:
    """The arrays an episode allocates stay far below memory limits, and demand stays a count of orders."""
    T, R, K, J = s.horizon_days, len(s.regions), len(s.skus), s.lots_per_batch
    W, D = len(s.warehouses), len(s.delivery_lanes)
    lead = max((t.lead_time_days[1] for t in s.transfer_lanes), default=1)
    for what, size in (
        ("horizon_days * regions * skus * lots_per_batch (the lot slots of an episode)", T * R * K * J),
        ("(horizon_days + longest lead) * warehouses * skus (the stock pipeline)", (T + lead + 1) * W * K),
        ("horizon_days * delivery_lanes", T * D),
    ):
        if size > MAX_LOT_DAYS:
            raise ValueError(
                f"{what} = {size:,}; at most {MAX_LOT_DAYS:,}: make the horizon shorter or the network smaller"
            )
    mean = expected_demand(s)
    if mean.size and mean.max() > MAX_DAILY_DEMAND:
        t, r, k = np.unravel_index(int(mean.argmax()), mean.shape)
        raise ValueError(
            f"regions[{r}] ({s.regions[r].name}).demand of {s.skus[k].name} reaches {mean.max():.4g} units on day {t} "
            f"(base_rate x weekly x trend x promotions); at most {MAX_DAILY_DEMAND:,} units/day"
        )


def _check_references(s: Scenario) -> None:
    """Cross-field checks; each message names the field, the value and the allowed values."""
    skus = [k.name for k in s.skus]
    whs = [w.name for w in s.warehouses]
    regs = [r.name for r in s.regions]
    for field, names in (("skus", skus), ("warehouses", whs), ("regions", regs)):
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"{field}: duplicate names {sorted(dup)}")

    def need(field: str, value: str, allowed: list[str]) -> None:
        if value not in allowed:
            raise ValueError(f"{field}={value!r} is unknown; allowed: {allowed}")

    for i, w in enumerate(s.warehouses):
        for k in (*w.initial_stock, *w.target_stock):
            need(f"warehouses[{i}] ({w.name}) SKU key", k, skus)
        if sum(w.initial_stock.values()) > w.capacity:
            raise ValueError(
                f"warehouses[{i}] ({w.name}).initial_stock totals {sum(w.initial_stock.values())} "
                f"units, above capacity={w.capacity}"
            )
    lane_modes: dict[str, set[tuple[str, str]]] = {r: set() for r in regs}
    for i, ln in enumerate(s.delivery_lanes):
        need(f"delivery_lanes[{i}].warehouse", ln.warehouse, whs)
        need(f"delivery_lanes[{i}].region", ln.region, regs)
        key = (ln.warehouse, ln.mode)
        if key in lane_modes[ln.region]:
            raise ValueError(f"delivery_lanes[{i}]: lane {ln.warehouse}->{ln.region} by {ln.mode} is listed twice")
        lane_modes[ln.region].add(key)
    for i, r in enumerate(s.regions):
        for k in r.demand:
            need(f"regions[{i}] ({r.name}).demand SKU key", k, skus)
        home = (r.home_warehouse, r.home_mode)
        allowed = sorted(f"{w}/{m}" for w, m in lane_modes[r.name])
        if home not in lane_modes[r.name]:
            raise ValueError(
                f"regions[{i}] ({r.name}).home_warehouse/home_mode={r.home_warehouse}/{r.home_mode} "
                f"is not a delivery lane of this region; allowed: {allowed}"
            )
    seen: set[tuple[str, str, str]] = set()
    for i, ln in enumerate(s.transfer_lanes):
        need(f"transfer_lanes[{i}].origin", ln.origin, whs)
        need(f"transfer_lanes[{i}].destination", ln.destination, whs)
        if (ln.origin, ln.destination, ln.mode) in seen:
            raise ValueError(f"transfer_lanes[{i}]: {ln.origin}->{ln.destination} by {ln.mode} is listed twice")
        seen.add((ln.origin, ln.destination, ln.mode))
    hubs = [w.name for w in s.warehouses if w.kind == "hub"]
    for i, sh in enumerate(s.supplier_shipments):
        need(f"supplier_shipments[{i}].warehouse", sh.warehouse, hubs)
        need(f"supplier_shipments[{i}].sku", sh.sku, skus)


def _format_errors(err: ValidationError) -> str:
    errors = err.errors()
    # a container whose item failed also reports itself "too short"; that echo only confuses
    failed = [e["loc"] for e in errors]
    errors = [
        e
        for e in errors
        if not (
            e["type"] == "too_short" and any(f[: len(e["loc"])] == e["loc"] and len(f) > len(e["loc"]) for f in failed)
        )
    ]
    lines = [f"invalid scenario ({len(errors)} error(s)):"]
    for e in errors:
        loc = ".".join(str(p) for p in e["loc"]) or "<scenario>"
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = "" if isinstance(value, dict | list | tuple) else f" (got {value!r})"
        if e["type"] == "extra_forbidden":
            msg = f"unknown key {e['loc'][-1]!r}; allowed keys: {_allowed_keys(e['loc'][:-1])}"
            shown = ""
        lines.append(f"  {loc}: {msg}{shown}")
    return "\n".join(lines)


def _allowed_keys(loc: tuple) -> list[str]:
    """Field names of the model found at ``loc`` (a pydantic error location) inside a Scenario."""
    model: type[BaseModel] = Scenario
    for part in loc:
        if isinstance(part, str) and part in model.model_fields:
            annotation = model.model_fields[part].annotation
            # tuple[Model, ...] or dict[str, Model]: the model is the last type argument
            args = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation
            elif args:
                model = args[-1]
    return list(model.model_fields)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


@functools.lru_cache(maxsize=32)
def _load_preset(name: str) -> Scenario:
    return Scenario.from_file(PRESET_DIR / f"{name}.yaml")


def load_scenario(spec: str | Path | Scenario) -> Scenario:
    """A :class:`Scenario` from a preset name (``"table1"``), a YAML/JSON path, or a Scenario (returned as is)."""
    if isinstance(spec, Scenario):
        return spec
    if not isinstance(spec, str | Path):
        raise ScenarioError(
            f"scenario={spec!r} must be a preset name, a .yaml/.yml/.json path or a Scenario; presets: {preset_names()}"
        )
    if isinstance(spec, str) and spec in preset_names():
        return _load_preset(spec)
    path = Path(spec)
    if path.suffix in {".yaml", ".yml", ".json"}:
        return Scenario.from_file(path)
    raise ScenarioError(
        f"scenario={str(spec)!r} is neither a preset nor a .yaml/.yml/.json file; presets: {preset_names()}"
    )
