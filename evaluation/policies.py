"""Every policy ``evaluate.py`` can play, named on its command line: built-ins, the rolling MILP and trained agents.

``--policies`` is parsed into :class:`PolicySpec` records (syntax first, then each agent is loaded
once and checked against the env it will play); :func:`build_policy` turns a spec into a policy
object in whichever process plays it. The hindsight MILP's rows carry the label :data:`HINDSIGHT`.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import gymnasium as gym

from baselines import POLICY_NAMES, make_policy
from baselines.rolling import RollingHorizonPolicy
from envs.scenario import Scenario

HINDSIGHT = "hindsight-milp"  # label of the hindsight optimum's rows
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # safe in file names and CSV headers


class EvaluateError(ValueError):
    """Bad input to evaluate.py; the message starts with the option at fault and says what is allowed."""


@dataclass(frozen=True)
class PolicySpec:
    """One policy of the run, as named on the command line."""

    label: str  # its name in every output (row files, CSV, plots)
    kind: str  # "hindsight", "builtin" (heuristics, rolling-milp) or "agent" (a trained checkpoint)
    checkpoint: str | None = None  # agent directory or model.zip, for kind "agent"
    checkpoint_sha256: str | None = None  # of every file of the checkpoint directory, for kind "agent"
    forecast_days: int | None = None  # env argument the agent was trained with, for kind "agent"
    options: tuple[tuple[str, object], ...] = ()  # resolved keyword arguments of a built-in policy (rolling-milp)
    trusted: bool = False  # the user vouches for a pickle-based (old format) checkpoint: --trust-checkpoint
    payload: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)  # the checkpoint's files, for Ray workers

    def with_payload(self) -> PolicySpec:
        """This agent with its checkpoint's files attached (``payload``), for workers without the path."""
        directory = Path(self.checkpoint)
        directory = directory.parent if directory.is_file() else directory
        files = tuple((p.name, p.read_bytes()) for p in sorted(directory.iterdir()) if p.is_file())
        return replace(self, payload=files)

    def identity(self) -> dict:
        """What must match for rows of an earlier run to be reused (a moved checkpoint is the same agent)."""
        out = {"label": self.label, "kind": self.kind, "checkpoint_sha256": self.checkpoint_sha256}
        if self.options:
            out["options"] = dict(self.options)
        return out


def builtin_policy_names() -> list[str]:
    return list(POLICY_NAMES)


def parse_policies(text: str) -> list[PolicySpec]:
    """``"ppo=PATH,rolling-milp,greedy"`` -> specs (syntax only; agents are checked by :func:`resolve_run`).

    A bare name is a built-in policy; ``LABEL=PATH`` is a trained agent loaded from ``PATH``
    and shown as ``LABEL``. The hindsight MILP is always evaluated; naming it is allowed.
    """
    allowed = f"{builtin_policy_names()}, {HINDSIGHT!r}, or LABEL=CHECKPOINT for a trained agent (e.g. ppo=PATH)"
    specs: list[PolicySpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise EvaluateError(f"--policies: empty entry in {text!r}; allowed entries: {allowed}")
        if "=" in item:
            label, _, path = (s.strip() for s in item.partition("="))
            if not _LABEL.match(label):
                raise EvaluateError(
                    f"--policies: agent label {label!r} in {item!r} is not allowed; use letters, digits and _ . + - "
                    "(e.g. ppo=PATH)"
                )
            if label in builtin_policy_names() or label == HINDSIGHT:
                raise EvaluateError(
                    f"--policies: agent label {label!r} is a built-in policy name; pick another (e.g. ppo)"
                )
            if not path:
                raise EvaluateError(f"--policies: {item!r} names no checkpoint; write {label}=PATH")
            specs.append(PolicySpec(label, "agent", checkpoint=path))
        elif item == HINDSIGHT:
            specs.append(PolicySpec(HINDSIGHT, "hindsight"))
        elif item in builtin_policy_names():
            specs.append(PolicySpec(item, "builtin"))
        else:
            raise EvaluateError(f"--policies: unknown policy {item!r}; allowed: {allowed}")
    labels = [s.label for s in specs]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise EvaluateError(f"--policies: {repeated} listed more than once; give each policy a distinct label")
    return specs


ROLLING_FLAGS = {
    "window": "--rolling-window",
    "time_limit": "--rolling-time-limit",
    "mip_gap": "--rolling-mip-gap",
    "node_limit": "--rolling-node-limit",
}


def rolling_options(given: dict, listed: bool) -> tuple[tuple[str, object], ...]:
    """The rolling-horizon MILP's resolved options (defaults filled in), checked; errors name the flag."""
    unknown = sorted(set(given) - set(ROLLING_FLAGS))
    if unknown:
        raise EvaluateError(f"rolling options {unknown} are not allowed; allowed: {list(ROLLING_FLAGS)}")
    set_flags = [ROLLING_FLAGS[k] for k, v in given.items() if v is not None]
    if set_flags and not listed:
        raise EvaluateError(f"{set_flags[0]}: set, but rolling-milp is not in --policies; add it or drop the option")
    options = {**RollingHorizonPolicy.DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    error = RollingHorizonPolicy.option_error(**options)
    if error is not None:
        raise EvaluateError(f"{ROLLING_FLAGS[error[0]]}: {error[1]}")
    return tuple(options.items())


def check_agent(spec: PolicySpec, scenario: Scenario, env_id: str) -> tuple[PolicySpec, list[str]]:
    """Load the checkpoint and compare it with the env it will play; returns the spec with its hash."""
    from agents import load_agent  # deferred: torch is imported only when an agent is evaluated

    where = f"--policies {spec.label}={spec.checkpoint}"
    path = Path(spec.checkpoint)
    if not path.exists():
        raise EvaluateError(
            f"{where}: checkpoint {str(path)!r} does not exist; give an agent directory written by train.py"
        )
    try:
        agent = load_agent(path, name=spec.label, trust=spec.trusted)
    except Exception as err:  # a missing, damaged or untrusted file: all mean "not a usable agent"
        raise EvaluateError(f"{where}: cannot load the agent ({type(err).__name__}: {err})") from None
    if agent.env_id != env_id:
        raise EvaluateError(
            f"{where}: the agent was trained on env id {agent.env_id!r} but --env is {env_id!r}; "
            f"use --env {agent.env_id} or an agent trained on {env_id}"
        )
    forecast_days = int(agent.meta.forecast_days)
    env = gym.make(env_id, scenario=scenario, forecast_days=forecast_days)
    obs_shape = tuple(int(n) for n in env.observation_space.shape)
    nvec = tuple(int(n) for n in env.action_space.nvec)
    env.close()
    if tuple(agent.observation_shape) != obs_shape or tuple(agent.action_nvec) != nvec:
        raise EvaluateError(
            f"{where}: the agent was trained on scenario {agent.scenario_name!r} (observation shape "
            f"{tuple(agent.observation_shape)}, {len(agent.action_nvec)} action slots) which does not fit scenario "
            f"{scenario.name!r} (observation shape {obs_shape}, {len(nvec)} action slots); "
            f"use --scenario {agent.scenario_name} or an agent trained on {scenario.name}"
        )
    warnings = []
    if agent.scenario_hash != scenario.content_hash():
        warnings.append(
            f"agent {spec.label!r} was trained on scenario {agent.scenario_name!r} ({agent.scenario_hash}), "
            f"evaluated on {scenario.name!r} ({scenario.content_hash()}): same shape, other data"
        )
    directory = path.parent if path.suffix == ".zip" else path
    checked = PolicySpec(spec.label, "agent", str(path), _hash_files(directory), forecast_days, trusted=spec.trusted)
    return checked, warnings


def _hash_files(directory: Path) -> str:
    """SHA-256 (hex, 16 chars) over the names and bytes of every file in ``directory``, in name order."""
    digest = hashlib.sha256()
    for p in sorted(q for q in directory.rglob("*") if q.is_file()):
        digest.update(str(p.relative_to(directory)).encode() + b"\0" + p.read_bytes())
    return digest.hexdigest()[:16]


def build_policy(spec: PolicySpec, scenario: Scenario, env_id: str):
    """The policy object of a built-in or agent spec (each worker process builds its own)."""
    if spec.kind == "agent":
        from agents import load_agent  # deferred: torch is imported only when an agent is evaluated

        if spec.payload:  # a Ray worker: the checkpoint came as bytes; it is checked (checksums) on loading
            directory = Path(tempfile.mkdtemp(prefix=f"agent-{spec.label}-"))
            for name, data in spec.payload:
                (directory / Path(name).name).write_bytes(data)
            return load_agent(directory, name=spec.label, trust=spec.trusted)
        return load_agent(spec.checkpoint, name=spec.label, trust=spec.trusted)
    return make_policy(spec.label, scenario, env_id, **dict(spec.options))
