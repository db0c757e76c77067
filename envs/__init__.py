"""Cross-border dispatch environments, registered with Gymnasium on ``import envs``.

Ids: ``CrossBorderDispatch-v0`` (routing and transfers), ``CrossBorderRouting-v0``
(routing only), ``CrossBorderTransfer-v0`` (transfers only, fixed routing rule).
See :class:`envs.dispatch_env.CrossBorderDispatchEnv` for the manual.

Modules, bottom up (each imports only those above it): ``files``, ``lots``, ``reward``
(terms, signs, per-unit formulas), ``forecast`` (expectations), ``network`` (the compiled
scenario and every coefficient), ``layout`` (decision modes, the action layout),
``realization`` (the random trace and its compiled ``Trace``), ``scenario`` (validated data),
``generate`` (scenarios drawn from a seed and a size), ``view``, ``kernels`` (the day's rules as
compiled loops over a batch axis), ``dynamics`` (the transition of one state), ``dispatch_env`` (the
Gymnasium env), ``batched`` (``B`` episodes at once, ``gym.make_vec``).
"""

from gymnasium.envs.registration import register, registry

from envs.dispatch_env import CrossBorderDispatchEnv
from envs.forecast import expected_demand
from envs.generate import generate_scenario
from envs.layout import DECISIONS, ENV_IDS, ActionLayout, action_layout, decisions_of
from envs.realization import Realization
from envs.reward import TERM_NAMES
from envs.scenario import Scenario, ScenarioError, load_scenario, preset_names

for _env_id, _decisions in ENV_IDS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point="envs.dispatch_env:CrossBorderDispatchEnv",
            vector_entry_point="envs.batched:BatchedDispatchEnv",  # gym.make_vec(id, num_envs=B): one array program
            kwargs={"decisions": _decisions},
        )

__all__ = [
    "DECISIONS",
    "ENV_IDS",
    "TERM_NAMES",
    "ActionLayout",
    "CrossBorderDispatchEnv",
    "Realization",
    "Scenario",
    "ScenarioError",
    "action_layout",
    "decisions_of",
    "expected_demand",
    "generate_scenario",
    "load_scenario",
    "preset_names",
]
