"""Cross-border dispatch environments, registered with Gymnasium on ``import envs``.

Ids: ``CrossBorderDispatch-v0`` (routing and transfers), ``CrossBorderRouting-v0``
(routing only), ``CrossBorderTransfer-v0`` (transfers only, fixed routing rule).
See :class:`envs.dispatch_env.CrossBorderDispatchEnv` for the manual.
"""

from gymnasium.envs.registration import register, registry

from envs.dispatch_env import CrossBorderDispatchEnv
from envs.dynamics import TERM_NAMES
from envs.realization import Realization, expected_demand
from envs.scenario import Scenario, ScenarioError, load_scenario, preset_names

ENV_IDS = {
    "CrossBorderDispatch-v0": "both",
    "CrossBorderRouting-v0": "routing",
    "CrossBorderTransfer-v0": "transfers",
}

for _env_id, _decisions in ENV_IDS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point="envs.dispatch_env:CrossBorderDispatchEnv",
            kwargs={"decisions": _decisions},
        )

__all__ = [
    "ENV_IDS",
    "TERM_NAMES",
    "CrossBorderDispatchEnv",
    "Realization",
    "Scenario",
    "ScenarioError",
    "expected_demand",
    "load_scenario",
    "preset_names",
]
