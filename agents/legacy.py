"""Reading agent directories of the first, pickle-based format (``model.zip`` + ``vecnormalize.pkl``).

Both files unpickle objects (SB3 stores parts of the model with cloudpickle; ``VecNormalize.save`` is
a pickle), which can run any code a crafted file holds. This module is imported only when the caller
has said it trusts the directory (:func:`agents.checkpoint.read_agent` with ``trust=True``); its result
is the same :class:`agents.checkpoint.AgentFiles` as a directory of the current format, so a trusted
old agent can be written out again as data (``scripts/convert_checkpoint.py``).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from agents.checkpoint import (
    CONFIG_FILE,
    LEGACY_MODEL_FILE,
    LEGACY_STATS_FILE,
    META_FILE,
    SCENARIO_FILE,
    AgentFiles,
    AgentMeta,
    CheckpointError,
    Normalization,
)
from agents.config import PPOConfig
from agents.factory import ALGO_CLASSES
from envs.scenario import Scenario


def read_legacy(directory: Path) -> AgentFiles:
    for name in (LEGACY_MODEL_FILE, META_FILE, CONFIG_FILE, SCENARIO_FILE):
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory / name} is missing; the agent directory is incomplete")
    meta = AgentMeta.from_dict(json.loads((directory / META_FILE).read_text()))
    config = PPOConfig.from_file(directory / CONFIG_FILE)
    scenario = Scenario.from_file(directory / SCENARIO_FILE)
    if scenario.content_hash() != meta.scenario_hash:
        raise CheckpointError(f"{directory / SCENARIO_FILE} does not match the scenario hash in {META_FILE}")
    model = ALGO_CLASSES[meta.algo].load(str(directory / LEGACY_MODEL_FILE), device="cpu")
    normalization = None
    if (directory / LEGACY_STATS_FILE).is_file():
        with open(directory / LEGACY_STATS_FILE, "rb") as fh:
            normalization = Normalization.of(pickle.load(fh))  # trusted by the caller
    elif config.norm_obs or config.norm_reward:
        raise CheckpointError(
            f"{directory / LEGACY_STATS_FILE} is missing: the agent was trained with normalized observations"
        )
    return AgentFiles(
        directory, meta, config, scenario, model.policy.state_dict(), model.policy.optimizer.state_dict(), normalization
    )
