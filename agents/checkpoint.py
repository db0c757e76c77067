"""Agent directories on disk: data only (tensors, JSON, YAML), checksummed, never a pickle from a user's path.

An agent directory (what ``train.py`` writes, and each ``agents/checkpoints/<scenario>__<env-id>/``):

| file | what |
|---|---|
| ``policy.safetensors`` | the policy's weights (``state_dict``) |
| ``optimizer.safetensors`` | Adam's state, for ``train.py --resume`` (its param groups in the file's metadata) |
| ``normalization.json`` | the ``VecNormalize`` running statistics (observation mean/var/count, return var), options |
| ``config.yaml`` | the resolved :class:`agents.config.PPOConfig` (network shape, algorithm, normalization flags) |
| ``scenario.yaml`` | the scenario trained on |
| ``agent.json`` | env id, scenario name and hash, spaces, timesteps, format version, SHA-256 of every file above |

Reading one executes nothing it contains: weights come through ``safetensors``, statistics through JSON,
the network is rebuilt from ``config.yaml`` by our own code. A file missing, damaged or edited (its
checksum differs from ``agent.json``) is refused with its name. Directories of the earlier format
(``model.zip`` and ``vecnormalize.pkl``, both of which unpickle objects and so can run code) are
refused unless the caller says it trusts them (``trust=True``, ``--trust-checkpoint``); converting one
(``scripts/convert_checkpoint.py``) needs the same trust once and gives a directory of this format.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from agents.config import ConfigError, PPOConfig
from envs.files import UMASK, write_atomic
from envs.scenario import Scenario, ScenarioError

FORMAT = 2
POLICY_FILE = "policy.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
NORMALIZATION_FILE = "normalization.json"
META_FILE = "agent.json"
CONFIG_FILE = "config.yaml"
SCENARIO_FILE = "scenario.yaml"
LEGACY_MODEL_FILE, LEGACY_STATS_FILE = "model.zip", "vecnormalize.pkl"  # format 1: pickles, trusted only
AGENT_FILES = (POLICY_FILE, OPTIMIZER_FILE, NORMALIZATION_FILE, CONFIG_FILE, SCENARIO_FILE, META_FILE)


class CheckpointError(ValueError):
    """An agent directory that cannot be used as it is: the message names the file and what to do."""


class UntrustedCheckpointError(CheckpointError):
    """A directory in the pickle-based format, read without the caller's explicit trust."""


@dataclass(frozen=True)
class AgentMeta:
    algo: str  # "maskable-ppo" or "ppo"
    env_id: str  # e.g. "CrossBorderDispatch-v0"
    scenario_name: str
    scenario_hash: str  # Scenario.content_hash() of the training scenario
    forecast_days: int
    observation_shape: tuple[int, ...]
    action_nvec: tuple[int, ...]
    num_timesteps: int  # env steps trained

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AgentMeta:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        missing = sorted(set(cls.__dataclass_fields__) - set(known))
        if missing:
            raise CheckpointError(f"{META_FILE} lacks {missing}")
        known["observation_shape"] = tuple(int(n) for n in known["observation_shape"])
        known["action_nvec"] = tuple(int(n) for n in known["action_nvec"])
        return cls(**known)


# ------------------------------------------------------------------ normalization statistics
@dataclass
class Normalization:
    """``VecNormalize``'s statistics as data; :meth:`normalize_obs` is VecNormalize's own formula."""

    norm_obs: bool
    norm_reward: bool
    clip_obs: float
    clip_reward: float
    gamma: float
    epsilon: float
    obs_mean: np.ndarray  # [obs_dim] float64
    obs_var: np.ndarray  # [obs_dim] float64
    obs_count: float
    ret_mean: float
    ret_var: float
    ret_count: float

    @staticmethod
    def of(venv) -> Normalization:
        """The statistics of a ``VecNormalize`` as they are now."""
        return Normalization(
            bool(venv.norm_obs), bool(venv.norm_reward), float(venv.clip_obs), float(venv.clip_reward),
            float(venv.gamma), float(venv.epsilon), np.array(venv.obs_rms.mean, dtype=np.float64),
            np.array(venv.obs_rms.var, dtype=np.float64), float(venv.obs_rms.count),
            float(np.asarray(venv.ret_rms.mean)), float(np.asarray(venv.ret_rms.var)), float(venv.ret_rms.count),
        )  # fmt: skip

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.norm_obs:
            return obs
        scaled = (obs - self.obs_mean) / np.sqrt(self.obs_var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)

    def restore_into(self, venv) -> None:
        """Put these statistics into a fresh ``VecNormalize`` (to resume training where it stopped)."""
        venv.obs_rms.mean, venv.obs_rms.var, venv.obs_rms.count = (
            self.obs_mean.copy(),
            self.obs_var.copy(),
            self.obs_count,
        )
        venv.ret_rms.mean, venv.ret_rms.var, venv.ret_rms.count = self.ret_mean, self.ret_var, self.ret_count

    def to_json(self) -> str:
        data = asdict(self)
        data["obs_mean"], data["obs_var"] = self.obs_mean.tolist(), self.obs_var.tolist()
        return json.dumps(data, indent=1, allow_nan=False)  # floats as repr: exact round trip

    @staticmethod
    def from_json(text: str, obs_dim: int) -> Normalization:
        data = json.loads(text)
        fields = set(Normalization.__dataclass_fields__)
        if not isinstance(data, dict) or set(data) != fields:
            raise CheckpointError(f"{NORMALIZATION_FILE} must hold exactly the keys {sorted(fields)}")
        data["obs_mean"] = np.asarray(data["obs_mean"], dtype=np.float64)
        data["obs_var"] = np.asarray(data["obs_var"], dtype=np.float64)
        if data["obs_mean"].shape != (obs_dim,) or data["obs_var"].shape != (obs_dim,):
            raise CheckpointError(
                f"{NORMALIZATION_FILE} holds statistics of {data['obs_mean'].shape} observations; the agent's are "
                f"({obs_dim},)"
            )
        if not (np.all(np.isfinite(data["obs_mean"])) and np.all(data["obs_var"] >= 0)):
            raise CheckpointError(f"{NORMALIZATION_FILE}: obs_mean must be finite and obs_var >= 0")
        return Normalization(**data)


# ------------------------------------------------------------------ tensors
def _optimizer_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Adam's ``state_dict`` as flat tensors plus JSON metadata (its param groups)."""
    tensors = {f"state.{i}.{name}": value for i, s in state["state"].items() for name, value in s.items()}
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, {
        "param_groups": json.dumps(state["param_groups"])
    }


def _optimizer_state(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": json.loads(metadata["param_groups"])}


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
    except Exception as err:  # a damaged header or body: safetensors raises several kinds
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({type(err).__name__}: {err})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ writing
def write_agent(
    directory: str | Path,
    meta: AgentMeta,
    config: PPOConfig,
    scenario: Scenario,
    policy_state: dict,
    optimizer_state: dict | None,
    normalization: Normalization | None,
) -> Path:
    """Write an agent directory whole: into a temporary folder beside it, then renamed into place.

    An existing agent directory (``best/``) is swapped out; a folder holding anything else besides an
    agent (a run directory, whose final agent sits among its logs) gets each file written atomically and
    ``agent.json``, with the checksums, last, so a crash mid-save is detected when the agent is read.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in policy_state.items()}, str(staging / POLICY_FILE))
        if optimizer_state is not None:
            tensors, metadata = _optimizer_tensors(optimizer_state)
            save_file(tensors, str(staging / OPTIMIZER_FILE), metadata=metadata)
        if normalization is not None:
            write_atomic(staging / NORMALIZATION_FILE, normalization.to_json())
        config.to_file(staging / CONFIG_FILE)
        scenario.to_file(staging / SCENARIO_FILE)
        for p in staging.iterdir():  # mkdtemp and safetensors make private files; give the usual permissions
            os.chmod(p, 0o666 & ~UMASK)
        os.chmod(staging, 0o777 & ~UMASK)
        files = {p.name: _sha256(p) for p in sorted(staging.iterdir())}
        write_atomic(staging / META_FILE, json.dumps({**meta.to_dict(), "format": FORMAT, "files": files}, indent=1))
        _place(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _place(staging: Path, directory: Path) -> None:
    """Move the staged agent files to ``directory`` (see :func:`write_agent`)."""
    if not directory.exists():
        os.rename(staging, directory)
        return
    entries = {p.name for p in directory.iterdir()}
    if entries <= set(AGENT_FILES) | {LEGACY_MODEL_FILE, LEGACY_STATS_FILE}:  # an agent directory: swap it whole
        old = directory.with_name(f".{directory.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(directory, old)
        os.rename(staging, directory)
        shutil.rmtree(old, ignore_errors=True)
        return
    (directory / META_FILE).unlink(missing_ok=True)  # the old checksums must not vouch for new files
    for name in sorted(p.name for p in staging.iterdir() if p.name != META_FILE):
        os.replace(staging / name, directory / name)
    for stale in (LEGACY_MODEL_FILE, LEGACY_STATS_FILE):
        (directory / stale).unlink(missing_ok=True)
    os.replace(staging / META_FILE, directory / META_FILE)


# ------------------------------------------------------------------ reading
@dataclass
class AgentFiles:
    """What an agent directory holds, read and checked."""

    directory: Path
    meta: AgentMeta
    config: PPOConfig
    scenario: Scenario
    policy_state: dict[str, torch.Tensor]
    optimizer_state: dict | None
    normalization: Normalization | None


def read_agent(path: str | Path, trust: bool = False) -> AgentFiles:
    """Read and check an agent directory (or the path of one of its files); see the module docstring.

    Raises :class:`CheckpointError` naming the missing, damaged or edited file; a directory in the
    pickle-based format needs ``trust=True``.
    """
    path = Path(path)
    directory = path.parent if path.is_file() else path
    if not directory.is_dir():
        raise CheckpointError(
            f"no agent at {str(path)!r}: not a directory; give an agent directory written by train.py"
        )
    if not (directory / POLICY_FILE).is_file() and (directory / LEGACY_MODEL_FILE).is_file():
        if not trust:
            raise UntrustedCheckpointError(
                f"{directory} holds an agent in the pickle-based format ({LEGACY_MODEL_FILE}, {LEGACY_STATS_FILE}), "
                "and unpickling a file can run any code in it. Load it only if you trust where it came from: "
                "--trust-checkpoint (load_agent(..., trust=True)), or convert it once with "
                "`python scripts/convert_checkpoint.py DIR --trust-checkpoint`"
            )
        from agents.legacy import read_legacy  # deferred: the pickle path is loaded only on explicit trust

        return read_legacy(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(
            f"no agent at {str(path)!r}: missing {META_FILE}; an agent directory (written by train.py) holds "
            f"{', '.join(AGENT_FILES)}"
        )
    try:
        doc = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{meta_path} is not valid JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("files"), dict):
        raise CheckpointError(f"{meta_path} is not an agent.json of format {FORMAT} (with 'format' and 'files')")
    meta = AgentMeta.from_dict(doc)
    files: dict[str, str] = doc["files"]
    for name in (POLICY_FILE, CONFIG_FILE, SCENARIO_FILE):
        if name not in files:
            raise CheckpointError(f"{meta_path} lists no checksum for {name}, which every agent has")
    for name, digest in files.items():
        if name not in AGENT_FILES or name == META_FILE:
            raise CheckpointError(f"{meta_path} lists {name!r}, which is not an agent file; allowed: {AGENT_FILES}")
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory / name} is missing (listed in {META_FILE}); the agent is incomplete")
        if _sha256(directory / name) != digest:
            raise CheckpointError(
                f"{directory / name} does not match its checksum in {META_FILE}: the file was damaged or edited"
            )
    try:
        config = PPOConfig.from_file(directory / CONFIG_FILE)
        scenario = Scenario.from_file(directory / SCENARIO_FILE)
    except (ConfigError, ScenarioError) as err:
        raise CheckpointError(f"{directory}: {err}") from None
    if scenario.content_hash() != meta.scenario_hash:
        raise CheckpointError(
            f"{directory / SCENARIO_FILE} has hash {scenario.content_hash()} but {META_FILE} says {meta.scenario_hash}"
        )
    needs_stats = config.norm_obs or config.norm_reward
    if needs_stats and NORMALIZATION_FILE not in files:
        raise CheckpointError(
            f"{directory / NORMALIZATION_FILE} is missing: the agent was trained with normalized observations "
            "(norm_obs/norm_reward in config.yaml) and plays wrongly without its statistics"
        )
    normalization = None
    if NORMALIZATION_FILE in files:
        obs_dim = int(np.prod(meta.observation_shape))
        normalization = Normalization.from_json((directory / NORMALIZATION_FILE).read_text(), obs_dim)
    policy_state, _ = _read_tensors(directory / POLICY_FILE)
    optimizer_state = None
    if OPTIMIZER_FILE in files:
        optimizer_state = _optimizer_state(*_read_tensors(directory / OPTIMIZER_FILE))
    return AgentFiles(directory, meta, config, scenario, policy_state, optimizer_state, normalization)
