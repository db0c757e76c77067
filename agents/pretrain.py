"""Optional imitation warm start: behaviour cloning of a teacher policy before PPO (``pretrain_teacher``).

PPO from scratch on ``table1`` (55 action slots, one scalar reward per day) spends its first
hundreds of thousands of steps rediscovering what the greedy rule knows. With a
``pretrain_teacher`` the policy first imitates a teacher on training seeds (masked
log-likelihood of its actions), and the value head regresses the discounted returns of the
episodes played, so PPO starts from the teacher's level and its value estimates are not random.

Teachers: any heuristic (``base-stock``, ``greedy``, ...) or ``rolling-milp``, the rolling-horizon
MILP (``baselines/rolling.py``; options ``pretrain_teacher_window``, ``pretrain_teacher_time_limit``,
``pretrain_teacher_mip_gap``, ``pretrain_teacher_node_limit``). The rolling MILP sees only what a policy
sees (today's view and the scenario's forecast), so it is a realizable teacher, not an oracle: cloning it
leaks no hindsight. It costs a MILP solve per day, so its episodes are few; ``pretrain_dagger_rounds`` then adds DAgger
rounds (Ross et al., 2011): the cloned policy plays ``pretrain_dagger_episodes`` episodes
(deterministically, as it is evaluated), the teacher labels every state it visits, and the policy
is refitted on everything gathered so far, so it learns to recover from its own mistakes. Refits
are not monotone, so the last one is scored like the others (the learner alone on the next
training episodes) and the iterate with the best mean return on training seeds is kept.

Everything stays consistent with training: the episodes use the training seed range
(``TrainingSeeds``, a stream of its own), observations feed ``VecNormalize``'s running
mean/std, and rewards are scaled exactly as ``VecNormalize`` would (running std of the
discounted return) before the value targets are built. In DAgger episodes the rewards (hence
value targets) are those of the actions played, the cloned policy's.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.vec_env import VecNormalize

from agents.config import PPOConfig
from agents.factory import TrainingSeeds
from baselines import make_policy
from baselines.rolling import RollingHorizonPolicy
from envs.view import DayView
from evaluation.episode import run_episode

PRETRAIN_STREAM_OFFSET = 7_919  # teacher episodes use the stream seeded by seed + this (not a PPO env's stream)


@dataclass
class TeacherData:
    obs: np.ndarray  # [N, obs_dim] float32, raw env observations
    masks: np.ndarray  # [N, sum(nvec)] bool
    actions: np.ndarray  # [N, n_slots] int64, the teacher's actions (its labels, in DAgger episodes)
    rewards: np.ndarray  # [N] float, USD, of the actions played
    dones: np.ndarray  # [N] bool, last day of an episode
    mean_return: float  # USD, mean episode return of the policy that played these episodes
    seconds: float = 0.0  # wall time of the collection
    teacher_seconds: float = 0.0  # of which in the teacher's act()
    daily_solves: int = 0  # rolling-milp teacher: MILP solves, and how many stopped at the time limit
    time_limit_hits: int = 0

    @staticmethod
    def concat(parts: list[TeacherData]) -> TeacherData:
        return TeacherData(
            np.concatenate([p.obs for p in parts]),
            np.concatenate([p.masks for p in parts]),
            np.concatenate([p.actions for p in parts]),
            np.concatenate([p.rewards for p in parts]),
            np.concatenate([p.dones for p in parts]),
            float(np.mean([p.mean_return for p in parts])),
            sum(p.seconds for p in parts),
            sum(p.teacher_seconds for p in parts),
            sum(p.daily_solves for p in parts),
            sum(p.time_limit_hits for p in parts),
        )


def make_teacher(config: PPOConfig, scenario):
    """The teacher policy of ``config`` (a heuristic, or the rolling MILP with the config's options)."""
    if config.pretrain_teacher == RollingHorizonPolicy.name:
        return make_policy(
            config.pretrain_teacher,
            scenario,
            env_id=config.env_id,
            window=config.pretrain_teacher_window,
            time_limit=config.pretrain_teacher_time_limit,
            mip_gap=config.pretrain_teacher_mip_gap,
            node_limit=config.pretrain_teacher_node_limit,
        )
    return make_policy(config.pretrain_teacher, scenario, env_id=config.env_id)


def teacher_env(config: PPOConfig) -> gym.Env:
    """The env the teacher episodes are played in: training seeds, from the stream seeded by seed + offset."""
    return TrainingSeeds(
        gym.make(config.env_id, scenario=config.scenario, forecast_days=config.forecast_days),
        stream_seed=config.seed + PRETRAIN_STREAM_OFFSET,
    )


class _Labelled:
    """A policy that asks the teacher for a label on every state it meets and plays the learner's action
    (``learner(obs, mask) -> action``), or the teacher's own when there is no learner."""

    name = "teacher"

    def __init__(self, teacher, learner=None) -> None:
        self.teacher, self.learner = teacher, learner
        self.labels: list[np.ndarray] = []
        self.teacher_seconds = 0.0

    def reset(self, seed: int | None = None) -> None:
        self.teacher.reset(seed)

    def act(self, obs: np.ndarray, view: DayView) -> np.ndarray:
        t0 = time.perf_counter()
        label = self.teacher.act(obs, view)
        self.teacher_seconds += time.perf_counter() - t0
        self.labels.append(np.asarray(label, dtype=np.int64))
        return label if self.learner is None else self.learner(obs, view.action_mask())


class _Learner:
    """``learner(obs, mask) -> action`` behind the policy interface."""

    name = "learner"

    def __init__(self, learner) -> None:
        self.learner = learner

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: np.ndarray, view: DayView) -> np.ndarray:
        return self.learner(obs, view.action_mask())


def teacher_episode(config: PPOConfig, seed: int) -> TeacherData:
    """The teacher of ``config`` plays the episode of realization ``seed``: its observations, masks, actions and
    rewards (a pure function of its arguments, so it can run in any process)."""
    env = gym.make(config.env_id, scenario=config.scenario, forecast_days=config.forecast_days)
    teacher = make_teacher(config, env.unwrapped.scenario)
    return _record(teacher, [seed], env)


def _record(teacher, seeds: list[int | None], env, learner=None) -> TeacherData:
    """Play one episode per seed of ``seeds`` (None: ``env`` draws it), the teacher labelling every state."""
    labelled = _Labelled(teacher, learner)
    started, solves, hits, results = time.perf_counter(), 0, 0, []
    for seed in seeds:
        results.append(run_episode(env, labelled, seed, record=True))
        statuses = getattr(teacher, "statuses", None)
        if statuses is not None:
            solves += len(statuses)
            hits += sum(s == "time_limit" for s in statuses)
    dones = [np.arange(r.steps) == r.steps - 1 for r in results]
    return TeacherData(
        np.asarray([o for r in results for o in r.observations], dtype=np.float32),
        np.asarray([m for r in results for m in r.masks], dtype=bool),
        np.asarray(labelled.labels, dtype=np.int64),
        np.asarray([x for r in results for x in r.rewards], dtype=np.float64),
        np.concatenate(dones) if dones else np.zeros(0, dtype=bool),
        float(np.mean([r.episode_return for r in results])) if results else float("nan"),
        time.perf_counter() - started,
        labelled.teacher_seconds,
        solves,
        hits,
    )


def collect_teacher(
    config: PPOConfig, episodes: int, env=None, teacher=None, learner=None, backend=None
) -> TeacherData:
    """Play ``episodes`` training-seed episodes and record the teacher's action on every state.

    Without ``learner`` the teacher plays (behaviour cloning data), one :func:`teacher_episode` per seed: on
    ``backend`` (:mod:`evaluation.backends`) in parallel, the same data as one after the other. With ``learner``
    (a callable ``(obs, mask) -> action``) the learner's action is played and the teacher (default: the
    config's) only labels (DAgger), in this process. ``env`` (a :func:`teacher_env`) continues its seed stream
    across calls; a fresh one starts it.
    """
    env = teacher_env(config) if env is None else env
    seeds = env.next_seeds(episodes)
    if learner is not None:
        teacher = make_teacher(config, env.unwrapped.scenario) if teacher is None else teacher
        return _record(teacher, seeds, env.env, learner)  # the stream drew the seeds: play them as they are
    started = time.perf_counter()
    if backend is None:
        parts = {seed: teacher_episode(config, seed) for seed in seeds}
    else:
        parts = dict(backend.map(teacher_episode, config, seeds))
    data = TeacherData.concat([parts[seed] for seed in seeds])
    data.seconds = time.perf_counter() - started  # wall time (parts played in parallel overlap)
    return data


def _feed_normalizer(venv: VecNormalize, data: TeacherData, gamma: float) -> None:
    """Update VecNormalize's statistics as it would have on these steps (observations; discounted returns)."""
    if venv.norm_obs:
        venv.obs_rms.update(data.obs)
    running, discounted = 0.0, np.empty_like(data.rewards)
    for i, (r, done) in enumerate(zip(data.rewards, data.dones, strict=True)):
        running = running * gamma + r
        discounted[i] = running
        if done:
            running = 0.0
    if venv.norm_reward:
        venv.ret_rms.update(discounted)


def _fit(model, venv: VecNormalize, data: TeacherData, config: PPOConfig, optimizer, rng) -> float:
    """``pretrain_epochs`` supervised passes over ``data``; returns the slot agreement afterwards."""
    obs = venv.normalize_obs(data.obs).astype(np.float32)
    rewards = venv.normalize_reward(data.rewards)
    # value targets: discounted returns-to-go of the scaled rewards, within each episode
    targets, to_go = np.empty_like(rewards), 0.0
    for i in range(len(rewards) - 1, -1, -1):
        to_go = rewards[i] + (0.0 if data.dones[i] else config.gamma * to_go)
        targets[i] = to_go

    policy = model.policy
    masked = config.algo == "maskable-ppo"
    device = model.device  # the networks may train on an accelerator (PPOConfig.device)
    obs_t, act_t = torch.as_tensor(obs, device=device), torch.as_tensor(data.actions, device=device)
    target_t = torch.as_tensor(targets, dtype=torch.float32, device=device)
    n, batch = len(obs), config.batch_size
    policy.set_training_mode(True)
    for _ in range(config.pretrain_epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            if masked:
                values, log_prob, _ = policy.evaluate_actions(obs_t[idx], act_t[idx], action_masks=data.masks[idx])
            else:
                values, log_prob, _ = policy.evaluate_actions(obs_t[idx], act_t[idx])
            loss = -log_prob.mean() + config.vf_coef * F.mse_loss(values.flatten(), target_t[idx])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()
    policy.set_training_mode(False)
    return _agreement(model, venv, data, config)


def _agreement(model, venv: VecNormalize, data: TeacherData, config: PPOConfig) -> float:
    """Fraction of action slots of ``data`` where the policy's mode is the teacher's action."""
    obs_t = torch.as_tensor(venv.normalize_obs(data.obs).astype(np.float32), device=model.device)
    with torch.no_grad():
        if config.algo == "maskable-ppo":
            dist = model.policy.get_distribution(obs_t, action_masks=data.masks)
        else:
            dist = model.policy.get_distribution(obs_t)
        return float((dist.mode() == torch.as_tensor(data.actions, device=model.device)).float().mean())


def _learner(model, venv: VecNormalize, masked: bool):
    def act(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        x = venv.normalize_obs(obs[None].astype(np.float32))
        if masked:
            action, _ = model.predict(x, deterministic=True, action_masks=mask[None])
        else:
            action, _ = model.predict(x, deterministic=True)
        return np.asarray(action[0], dtype=np.int64)

    return act


def _play(env, learner, episodes: int) -> float:
    """Mean return of ``learner`` alone on the next ``episodes`` episodes of ``env``'s seed stream."""
    policy = _Learner(learner)
    return float(np.mean([run_episode(env, policy).episode_return for _ in range(episodes)]))


def _snapshot(model, venv: VecNormalize) -> tuple:
    return copy.deepcopy(model.policy.state_dict()), copy.deepcopy(venv.obs_rms), copy.deepcopy(venv.ret_rms)


def _restore(model, venv: VecNormalize, snapshot: tuple) -> None:
    state, obs_rms, ret_rms = snapshot
    model.policy.load_state_dict(state)
    venv.obs_rms, venv.ret_rms = copy.deepcopy(obs_rms), copy.deepcopy(ret_rms)


def pretrain(model, venv: VecNormalize, config: PPOConfig, backend=None) -> dict:
    """Behaviour-clone ``config.pretrain_teacher`` into ``model.policy`` (then DAgger rounds, if asked);
    returns figures for the log. ``backend`` plays the teacher's own episodes in parallel (not DAgger's)."""
    started = time.perf_counter()
    env = teacher_env(config)
    teacher = make_teacher(config, env.unwrapped.scenario)
    data = collect_teacher(config, config.pretrain_episodes, env=env, backend=backend)
    teacher_return = data.mean_return
    _feed_normalizer(venv, data, config.gamma)
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.Adam(model.policy.parameters(), lr=config.pretrain_learning_rate)  # PPO's starts fresh
    agreement = _fit(model, venv, data, config, optimizer, rng)
    rounds, snapshots = [], []
    for _ in range(config.pretrain_dagger_rounds):
        snapshots.append(_snapshot(model, venv))  # the policy this round's learner episodes score
        new = collect_teacher(
            config,
            config.pretrain_dagger_episodes,
            env=env,
            teacher=teacher,
            learner=_learner(model, venv, config.algo == "maskable-ppo"),
        )
        rounds.append(
            {
                "learner_mean_return": round(new.mean_return, 2),
                # how well the policy already followed the teacher on the states it visits itself
                "learner_slot_agreement_before_refit": round(_agreement(model, venv, new, config), 4),
            }
        )
        _feed_normalizer(venv, new, config.gamma)
        data = TeacherData.concat([data, new])
        agreement = _fit(model, venv, data, config, optimizer, rng)
    kept = None
    if rounds:
        # DAgger iterates are not monotone (one refit can break a trajectory the previous one got right):
        # score the last refit like the others, on training episodes the learner plays alone, and keep
        # the iterate with the best mean return (training seeds only; never validation or held-out seeds)
        last_return = _play(env, _learner(model, venv, config.algo == "maskable-ppo"), config.pretrain_dagger_episodes)
        scores = [r["learner_mean_return"] for r in rounds] + [round(last_return, 2)]
        kept = int(np.argmax(scores))
        if kept < len(rounds):
            _restore(model, venv, snapshots[kept])
            agreement = _agreement(model, venv, data, config)
    figures = {
        "teacher": config.pretrain_teacher,
        "episodes": config.pretrain_episodes,
        "env_steps": int(len(data.obs)),
        "teacher_mean_return": round(teacher_return, 2),
        "slot_agreement": round(agreement, 4),  # fraction of action slots where the policy's mode = teacher
        "collect_seconds": round(data.seconds, 2),  # every episode played, DAgger rounds included
        "teacher_seconds": round(data.teacher_seconds, 2),  # of which in the teacher's act()
        "seconds": round(time.perf_counter() - started, 2),
    }
    if config.pretrain_teacher == "rolling-milp":
        figures.update(
            window=config.pretrain_teacher_window,
            time_limit=config.pretrain_teacher_time_limit,
            mip_gap=config.pretrain_teacher_mip_gap,
            node_limit=config.pretrain_teacher_node_limit,
            daily_solves=data.daily_solves,
            time_limit_hits=data.time_limit_hits,
        )
    if rounds:
        figures["dagger_rounds"] = rounds
        figures["dagger_final_learner_mean_return"] = scores[-1]
        figures["dagger_kept_iterate"] = kept  # 0: the plain behaviour clone, k: the refit after round k
    return figures
