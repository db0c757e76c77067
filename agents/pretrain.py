"""Optional imitation warm start: behaviour cloning of a heuristic before PPO (``pretrain_teacher``).

PPO from scratch on ``table1`` (55 action slots, one scalar reward per day) spends its first
hundreds of thousands of steps rediscovering what the greedy rule knows. With
``pretrain_teacher: base-stock`` the policy first imitates that heuristic on training seeds
(masked log-likelihood of its actions), and the value head regresses the teacher's discounted
returns, so PPO starts from the heuristic's level and its value estimates are not random.

Everything stays consistent with training: the episodes use the training seed range
(``TrainingSeeds``, a stream of its own), observations feed ``VecNormalize``'s running
mean/std, and rewards are scaled exactly as ``VecNormalize`` would (running std of the
discounted return) before the value targets are built.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.vec_env import VecNormalize

from agents.config import PPOConfig
from agents.factory import TrainingSeeds

PRETRAIN_STREAM_OFFSET = 7_919  # teacher episodes use the stream seeded by seed + this (not a PPO env's stream)


@dataclass
class TeacherData:
    obs: np.ndarray  # [N, obs_dim] float32, raw env observations
    masks: np.ndarray  # [N, sum(nvec)] bool
    actions: np.ndarray  # [N, n_slots] int64, the teacher's actions
    rewards: np.ndarray  # [N] float, USD
    dones: np.ndarray  # [N] bool, last day of an episode
    mean_return: float  # USD, teacher's mean episode return on these episodes


def collect_teacher(config: PPOConfig, episodes: int) -> TeacherData:
    """Play ``episodes`` training-seed episodes with the teacher heuristic and record what it did."""
    from baselines.heuristics import HEURISTICS

    env = TrainingSeeds(
        gym.make(config.env_id, scenario=config.scenario, forecast_days=config.forecast_days),
        stream_seed=config.seed + PRETRAIN_STREAM_OFFSET,
    )
    base = env.unwrapped
    teacher = HEURISTICS[config.pretrain_teacher](base.scenario)
    obs_l, mask_l, act_l, rew_l, done_l, returns = [], [], [], [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=config.seed + PRETRAIN_STREAM_OFFSET if episode == 0 else None)
        teacher.reset(base.episode_seed)
        done, total = False, 0.0
        while not done:
            action = teacher.act(obs, base.view())
            obs_l.append(obs)
            mask_l.append(base.action_masks())
            act_l.append(action)
            obs, reward, done, _, _ = env.step(action)
            rew_l.append(reward)
            done_l.append(done)
            total += reward
        returns.append(total)
    return TeacherData(
        np.asarray(obs_l, dtype=np.float32),
        np.asarray(mask_l, dtype=bool),
        np.asarray(act_l, dtype=np.int64),
        np.asarray(rew_l, dtype=np.float64),
        np.asarray(done_l, dtype=bool),
        float(np.mean(returns)),
    )


def pretrain(model, venv: VecNormalize, config: PPOConfig) -> dict:
    """Behaviour-clone ``config.pretrain_teacher`` into ``model.policy``; returns figures for the log."""
    started = time.perf_counter()
    data = collect_teacher(config, config.pretrain_episodes)
    collect_s = time.perf_counter() - started

    # observation statistics, as VecNormalize would have gathered them on these steps
    if venv.norm_obs:
        venv.obs_rms.update(data.obs)
    obs = venv.normalize_obs(data.obs).astype(np.float32)
    # reward scaling, as VecNormalize does it: running std of the discounted return
    running, discounted = 0.0, np.empty_like(data.rewards)
    for i, (r, done) in enumerate(zip(data.rewards, data.dones, strict=True)):
        running = running * config.gamma + r
        discounted[i] = running
        if done:
            running = 0.0
    if venv.norm_reward:
        venv.ret_rms.update(discounted)
    rewards = venv.normalize_reward(data.rewards)
    # value targets: discounted returns-to-go of the scaled rewards, within each episode
    targets, to_go = np.empty_like(rewards), 0.0
    for i in range(len(rewards) - 1, -1, -1):
        to_go = rewards[i] + (0.0 if data.dones[i] else config.gamma * to_go)
        targets[i] = to_go

    policy = model.policy
    masked = config.algo == "maskable-ppo"
    obs_t, act_t = torch.as_tensor(obs), torch.as_tensor(data.actions)
    target_t = torch.as_tensor(targets, dtype=torch.float32)
    rng = np.random.default_rng(config.seed)
    n, batch = len(obs), config.batch_size
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.pretrain_learning_rate)  # PPO's Adam starts fresh
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
    with torch.no_grad():
        dist = policy.get_distribution(obs_t, action_masks=data.masks) if masked else policy.get_distribution(obs_t)
        agreement = float((dist.mode() == act_t).float().mean())
    return {
        "teacher": config.pretrain_teacher,
        "episodes": config.pretrain_episodes,
        "env_steps": int(n),
        "teacher_mean_return": round(data.mean_return, 2),
        "slot_agreement": round(agreement, 4),  # fraction of action slots where the policy's mode = teacher
        "collect_seconds": round(collect_s, 2),
        "seconds": round(time.perf_counter() - started, 2),
    }
