"""Typed training configuration for PPO / masked PPO, with up-front validation.

Field names follow stable-baselines3's arguments (``learning_rate``, ``n_steps``,
``batch_size``, ``n_epochs``, ``gamma``, ``gae_lambda``, ``clip_range``, ``ent_coef``,
``vf_coef``, ``max_grad_norm``, ``target_kl``; ``total_timesteps`` and ``seed`` as in
``learn`` / the constructor; ``norm_obs``, ``norm_reward``, ``clip_obs``, ``clip_reward``
as in ``VecNormalize``), so a reader of the SB3 docs knows what each one means.
Every field carries its help text (``metadata["help"]``); ``train.py`` builds its
command line from them.

Seed ranges (disjoint, so validation and evaluation never see a training episode):

| use | seeds |
|---|---|
| training episodes | drawn in ``[10**6, 2*10**6)`` from a stream seeded by ``seed`` + env rank |
| validation during training | ``VALIDATION_SEEDS`` = 900..909 |
| evaluation / held-out (``evaluate.py``, ``bench/``) | 1000 and up (below ``10**6``) |
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import envs  # registers the ids; env_id is checked against envs.ENV_IDS
from baselines import POLICY_NAMES
from baselines.rolling import RollingHorizonPolicy
from envs.files import read_yaml, write_atomic
from envs.scenario import ScenarioError, load_scenario

TRAIN_SEED_LOW = 10**6  # training episode seeds lie in [TRAIN_SEED_LOW, TRAIN_SEED_HIGH)
TRAIN_SEED_HIGH = 2 * 10**6
VALIDATION_SEEDS = tuple(range(900, 910))
EVAL_SEED_START = 1000  # held-out evaluation seeds: EVAL_SEED_START, EVAL_SEED_START + 1, ...

ALGOS = ("maskable-ppo", "ppo")
ACTIVATIONS = ("tanh", "relu")
VEC_ENVS = ("batched", "dummy", "subproc")
DISTRIBUTIONS = ("tensor", "sb3-contrib")
DEVICES = ("cpu", "auto", "cuda")


class ConfigError(ValueError):
    """An invalid configuration; the message names the field, the allowed values and what to do."""


def _f(default: Any, help: str, **kw):  # noqa: A002 - "help" reads best here, as in argparse
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class PPOConfig:
    """Everything that defines one training run (the resolved config written beside the model)."""

    # --- what to learn on
    algo: str = _f("maskable-ppo", f"learning algorithm, one of {ALGOS}")
    env_id: str = _f("CrossBorderDispatch-v0", "Gymnasium id registered by `import envs`", flag="--env")
    scenario: str = _f("table1", "scenario preset name or YAML/JSON path")
    forecast_days: int = _f(3, "days of demand forecast in the observation (env argument)")
    total_timesteps: int = _f(200_000, "env steps (days) to train for, summed over all envs", flag="--timesteps")
    seed: int = _f(0, "seeds torch, the policy sampling and the training-episode seed streams")
    n_envs: int = _f(8, "parallel environments in the VecEnv")
    vec_env: str = _f(
        "batched",
        f"VecEnv, one of {VEC_ENVS} (batched: one array program for all envs, agents/vec_env.py; dummy/subproc: "
        "SB3's, one Python env each, the earlier stack, kept for comparison)",
    )
    # --- PPO (stable-baselines3 names)
    learning_rate: float = _f(3e-4, "Adam step size")
    n_steps: int = _f(120, "steps per env per rollout; at least one episode (the scenario's horizon_days)")
    batch_size: int = _f(240, "minibatch size; must divide the rollout size n_steps * n_envs")
    n_epochs: int = _f(10, "passes over each rollout")
    gamma: float = _f(0.99, "discount factor in (0, 1]")
    gae_lambda: float = _f(0.95, "GAE lambda in [0, 1]")
    clip_range: float = _f(0.2, "PPO clip range > 0")
    ent_coef: float = _f(0.0, "entropy bonus coefficient >= 0")
    vf_coef: float = _f(0.5, "value loss coefficient >= 0")
    max_grad_norm: float = _f(0.5, "gradient clipping norm > 0")
    target_kl: float | None = _f(None, "stop an update's epochs early past this KL (None: never)")
    net_arch: list[int] = _f([128, 128], "hidden layer sizes of the policy and value MLPs")
    activation_fn: str = _f("tanh", f"hidden activation, one of {ACTIVATIONS}")
    distribution: str = _f(
        "tensor",
        f"masked MultiDiscrete distribution of maskable-ppo, one of {DISTRIBUTIONS} (tensor: agents/distribution.py, "
        "same results, several times faster; the weights are the same either way)",
    )
    # --- normalization (VecNormalize names); daily rewards are O(100-1000) USD
    norm_obs: bool = _f(True, "normalize observations with running mean/std (saved with the model)")
    norm_reward: bool = _f(True, "scale rewards by the running std of the discounted return (saved with the model)")
    clip_obs: float = _f(10.0, "clip normalized observations to [-clip_obs, clip_obs]")
    clip_reward: float = _f(10.0, "clip scaled rewards to [-clip_reward, clip_reward]")
    # --- optional imitation warm start (agents/pretrain.py)
    pretrain_teacher: str | None = _f(
        None,
        "policy to behaviour-clone before PPO: a heuristic (e.g. base-stock) or rolling-milp "
        "(the rolling-horizon MILP, same information as the agent); None: PPO from scratch",
    )
    pretrain_episodes: int = _f(200, "teacher episodes (training seeds) for the warm start")
    pretrain_epochs: int = _f(10, "supervised passes over the teacher's steps")
    pretrain_learning_rate: float = _f(1e-3, "Adam step size of the warm start (its own optimizer)")
    pretrain_teacher_window: int = _f(21, "rolling-milp teacher only: look-ahead days of each daily solve")
    pretrain_teacher_time_limit: float | None = _f(
        2.0, "rolling-milp teacher only: seconds per daily solve (None: solve to pretrain_teacher_mip_gap)"
    )
    pretrain_teacher_mip_gap: float = _f(1e-4, "rolling-milp teacher only: relative MIP gap of each daily solve")
    pretrain_teacher_node_limit: int | None = _f(
        None, "rolling-milp teacher only: branch-and-bound nodes per daily solve (None: no node budget)"
    )
    pretrain_dagger_rounds: int = _f(
        0, "DAgger rounds after behaviour cloning: the cloned policy plays, the teacher labels its states, refit"
    )
    pretrain_dagger_episodes: int = _f(10, "episodes (training seeds) the cloned policy plays per DAgger round")
    # --- bookkeeping
    eval_freq: int = _f(20_000, "timesteps between validation runs on VALIDATION_SEEDS (0: only at the end)")
    checkpoint_freq: int = _f(50_000, "timesteps between checkpoints (0: only at the end)")
    hindsight: bool = _f(True, "report the validation return as a ratio to the hindsight MILP optimum")
    hindsight_time_limit: float | None = _f(
        60.0, "seconds per validation-seed hindsight solve (None: to proven optimality; table1 takes minutes)"
    )
    torch_threads: int = _f(1, "torch CPU threads (1 is fastest for small MLPs and makes runs reproducible)")
    device: str = _f(
        "cpu", f"where the networks train, one of {DEVICES} (auto: an accelerator when torch sees one, else cpu)"
    )

    # ------------------------------------------------------------- validation
    def validate(self) -> PPOConfig:
        """Raise :class:`ConfigError` naming the first bad field and what to do; return self when fine."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(self.algo in ALGOS, f"algo={self.algo!r} is not allowed; allowed: {list(ALGOS)}")
        need(self.env_id in envs.ENV_IDS, f"env_id={self.env_id!r} is not allowed; allowed: {list(envs.ENV_IDS)}")
        need(self.vec_env in VEC_ENVS, f"vec_env={self.vec_env!r} is not allowed; allowed: {list(VEC_ENVS)}")
        need(self.device in DEVICES, f"device={self.device!r} is not allowed; allowed: {list(DEVICES)}")
        need(
            self.device != "cuda" or torch_cuda_available(),
            "device='cuda' but torch sees no CUDA device here; use device='auto' (cuda when present) or 'cpu'",
        )
        need(
            self.distribution in DISTRIBUTIONS,
            f"distribution={self.distribution!r} is not allowed; allowed: {list(DISTRIBUTIONS)}",
        )
        need(
            self.activation_fn in ACTIVATIONS,
            f"activation_fn={self.activation_fn!r} is not allowed; allowed: {list(ACTIVATIONS)}",
        )
        try:
            scenario = load_scenario(self.scenario)
        except ScenarioError as err:
            raise ConfigError(f"scenario: {err}") from None
        for name in ("n_envs", "n_steps", "batch_size", "n_epochs", "total_timesteps", "torch_threads"):
            need(
                _is_int(getattr(self, name)) and getattr(self, name) >= 1,
                f"{name}={getattr(self, name)!r} must be an integer >= 1",
            )
        for name in (
            "forecast_days",
            "eval_freq",
            "checkpoint_freq",
            "pretrain_episodes",
            "pretrain_epochs",
            "pretrain_dagger_rounds",
            "pretrain_dagger_episodes",
        ):
            need(
                _is_int(getattr(self, name)) and getattr(self, name) >= 0,
                f"{name}={getattr(self, name)!r} must be an integer >= 0",
            )
        need(_is_int(self.seed) and 0 <= self.seed < 2**31, f"seed={self.seed!r} must be an integer in [0, 2**31)")
        horizon = scenario.horizon_days
        need(self.forecast_days <= 365, f"forecast_days={self.forecast_days} must be at most 365 (days), like the env")
        need(
            self.n_steps >= horizon,
            f"n_steps={self.n_steps} is shorter than one episode of scenario {scenario.name!r} "
            f"(horizon_days={horizon}): every return would be bootstrapped from the value estimate; "
            f"use n_steps >= {horizon}, ideally a multiple of it (e.g. n_steps={4 * horizon})",
        )
        rollout = self.n_steps * self.n_envs
        need(self.batch_size > 1, f"batch_size={self.batch_size} must be > 1 (advantages are normalized per minibatch)")
        need(
            self.batch_size <= rollout and rollout % self.batch_size == 0,
            f"batch_size={self.batch_size} must divide the rollout size n_steps*n_envs={self.n_steps}*{self.n_envs}"
            f"={rollout}; use a divisor such as batch_size={_divisor_near(rollout, self.batch_size)}, "
            "or change n_steps / n_envs",
        )
        need(
            self.total_timesteps >= rollout,
            f"total_timesteps={self.total_timesteps} is less than one rollout (n_steps*n_envs={rollout}); "
            f"use --timesteps >= {rollout} or lower n_steps / n_envs",
        )
        for f in dataclasses.fields(self):  # inf or NaN would pass every comparison below or train to NaN
            value = getattr(self, f.name)
            if f.type not in ("float", "float | None") or (value is None and f.type == "float | None"):
                continue
            need(
                isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
                f"{f.name}={value!r} must be a finite number",
            )
        need(0 < self.gamma <= 1, f"gamma={self.gamma} must be in (0, 1]")
        need(0 <= self.gae_lambda <= 1, f"gae_lambda={self.gae_lambda} must be in [0, 1]")
        for name in (
            "learning_rate",
            "pretrain_learning_rate",
            "clip_range",
            "max_grad_norm",
            "clip_obs",
            "clip_reward",
        ):
            need(getattr(self, name) > 0, f"{name}={getattr(self, name)} must be > 0")
        for name in ("ent_coef", "vf_coef"):
            need(getattr(self, name) >= 0, f"{name}={getattr(self, name)} must be >= 0")
        teacher = (
            self.pretrain_teacher_window,
            self.pretrain_teacher_time_limit,
            self.pretrain_teacher_mip_gap,
            self.pretrain_teacher_node_limit,
        )
        error = RollingHorizonPolicy.option_error(*teacher)  # the rolling-milp teacher's options, as the policy checks
        if error is not None:
            raise ConfigError(f"pretrain_teacher_{error[1]}")
        if self.pretrain_teacher is not None:
            need(
                self.pretrain_teacher in POLICY_NAMES,
                f"pretrain_teacher={self.pretrain_teacher!r} is not allowed; allowed: {list(POLICY_NAMES)} or None",
            )
            need(
                self.pretrain_episodes >= 1 and self.pretrain_epochs >= 1,
                "pretrain_episodes and pretrain_epochs must be >= 1 with a pretrain_teacher",
            )
            need(
                self.pretrain_dagger_rounds == 0 or self.pretrain_dagger_episodes >= 1,
                f"pretrain_dagger_episodes={self.pretrain_dagger_episodes} must be >= 1 with "
                f"pretrain_dagger_rounds={self.pretrain_dagger_rounds}",
            )
        else:
            need(
                self.pretrain_dagger_rounds == 0,
                f"pretrain_dagger_rounds={self.pretrain_dagger_rounds} needs a pretrain_teacher to label the states",
            )
        need(
            self.hindsight_time_limit is None or self.hindsight_time_limit > 0,
            f"hindsight_time_limit={self.hindsight_time_limit} must be > 0 or None",
        )
        need(self.target_kl is None or self.target_kl > 0, f"target_kl={self.target_kl} must be > 0 or None")
        need(
            isinstance(self.net_arch, list)
            and len(self.net_arch) >= 1
            and all(_is_int(n) and n >= 1 for n in self.net_arch),
            f"net_arch={self.net_arch!r} must be a non-empty list of layer sizes >= 1, e.g. [128, 128]",
        )
        return self

    # ----------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPOConfig:
        """Build from a mapping; unknown keys are an error naming the allowed ones (no silent typos)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping of field: value, got {type(data).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; allowed: {allowed}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> PPOConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            data = read_yaml(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as err:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of PPOConfig fields")
        return cls.from_dict(data or {})

    def to_file(self, path: str | Path) -> Path:
        """Write as YAML, whole (:func:`envs.files.write_atomic`)."""
        path = Path(path)
        write_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @property
    def rollout_size(self) -> int:
        return self.n_steps * self.n_envs


def torch_cuda_available() -> bool:
    import torch  # deferred: the config is read (and checked) by tools that never train

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a CUDA device, else ``"cpu"``; other values as they are."""
    return ("cuda" if torch_cuda_available() else "cpu") if device == "auto" else device


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _divisor_near(n: int, target: int) -> int:
    """The divisor of ``n`` (> 1) closest to ``target``, to suggest in an error message."""
    divisors = [d for d in range(2, n + 1) if n % d == 0] or [n]
    return min(divisors, key=lambda d: (abs(d - target), d))
