"""A masked MultiDiscrete distribution computed as one tensor, and the masked policy that uses it.

sb3-contrib's ``MaskableMultiCategoricalDistribution`` builds one torch ``Categorical`` per action slot
(55 on ``table1``, 1,200 on ``large``) and loops over them to sample, score and take entropies; with
torch's argument checks that loop is most of a PPO update here (sb3-contrib issue #283). This
distribution lays the logits out once as ``[batch, slots, max choices]`` (a gather from the flat
``sum(nvec)`` logits), masks with the same ``-1e8`` sb3-contrib uses (padding columns are masked the
same way), and does everything with a handful of tensor ops: ``log_softmax``, ``gather`` for the
log-probability of the actions, the entropy from the masked probabilities, Gumbel-max sampling and
``argmax`` for the mode. Log-probabilities and entropies equal sb3-contrib's to float rounding, the
mode is the same (``tests/test_distribution.py``), and the network is the same ``Linear`` layer, so a
checkpoint trained with either loads into either.
"""

from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import MaskableDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from torch import nn

HUGE_NEG = -1e8  # the masked logit of sb3-contrib's MaskableCategorical (a finite value: no NaN gradients)


class TensorMaskedMultiCategorical(MaskableDistribution):
    """Masked ``MultiDiscrete(nvec)`` distribution; shapes: ``[B, S]`` actions, ``[B, sum(nvec)]`` masks."""

    def __init__(self, action_dims) -> None:
        super().__init__()
        self.action_dims = [int(n) for n in action_dims]
        nvec = np.asarray(self.action_dims)
        width = int(nvec.max())
        starts = np.concatenate([[0], np.cumsum(nvec)[:-1]])
        columns = np.arange(width)[None, :]
        valid = columns < nvec[:, None]  # [S, N]: the column is one of the slot's choices
        self._index = th.as_tensor(np.where(valid, starts[:, None] + columns, 0), dtype=th.long)  # [S, N] -> flat
        self._valid = th.as_tensor(valid)
        self._flat: th.Tensor | None = None  # [B, sum(nvec)] logits as the network gave them
        self._allowed: th.Tensor | None = None  # [B, S, N] bool
        self._masks = None  # [B, sum(nvec)] bool, as given to apply_masking (None: no masks)
        self._log_probs: th.Tensor | None = None  # [B, S, N] normalized log-probabilities (masked: about -1e8)

    def proba_distribution_net(self, latent_dim: int) -> nn.Module:
        return nn.Linear(latent_dim, sum(self.action_dims))  # the layer sb3-contrib builds: checkpoints interchange

    def proba_distribution(self, action_logits: th.Tensor) -> TensorMaskedMultiCategorical:
        self._flat = action_logits.view(-1, sum(self.action_dims))
        self._masks, self._log_probs, self._allowed = None, None, None  # normalized on first use (_normalized)
        return self

    def apply_masking(self, masks) -> None:
        if self._flat is None:
            raise RuntimeError("set the distribution's parameters (proba_distribution) before masking it")
        self._masks, self._log_probs, self._allowed = masks, None, None
        if masks is not None:
            self._normalized()  # checks the masks' shape now

    def _normalized(self) -> th.Tensor:
        """``[B, S, N]`` log-probabilities of the logits under the masks, computed once per (logits, masks): a
        policy sets the logits then the masks, and normalizing in between would be thrown away."""
        if self._log_probs is None:
            self._mask(self._masks)
        return self._log_probs

    def _mask(self, masks) -> None:
        index, valid = self._index.to(self._flat.device), self._valid.to(self._flat.device)
        padded = self._flat[:, index]  # [B, S, N]
        allowed = valid.expand_as(padded)
        if masks is not None:
            flat_masks = th.as_tensor(masks, dtype=th.bool, device=self._flat.device).view(-1, sum(self.action_dims))
            if flat_masks.shape[0] != padded.shape[0]:
                raise ValueError(f"masks for {flat_masks.shape[0]} rows given to a batch of {padded.shape[0]}")
            allowed = allowed & flat_masks[:, index]
        logits = th.where(allowed, padded, th.tensor(HUGE_NEG, dtype=padded.dtype, device=padded.device))
        self._allowed = allowed
        self._log_probs = logits - logits.logsumexp(dim=-1, keepdim=True)  # as torch's Categorical normalizes

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        actions = actions.long().view(-1, len(self.action_dims))
        return self._normalized().gather(-1, actions.unsqueeze(-1)).squeeze(-1).sum(dim=1)

    def entropy(self) -> th.Tensor:
        log_probs = self._normalized()
        probs = log_probs.exp()  # masked choices: exp(-1e8) = 0
        p_log_p = th.where(self._allowed, log_probs * probs, th.zeros((), dtype=probs.dtype, device=probs.device))
        return -p_log_p.sum(dim=(1, 2))

    def sample(self) -> th.Tensor:
        # Gumbel-max: argmax(log p + Gumbel noise) is a draw from p; masked choices stay at about -1e8
        log_probs = self._normalized()
        uniform = th.rand_like(log_probs).clamp_(min=th.finfo(log_probs.dtype).tiny)
        return (log_probs - th.log(-th.log(uniform))).argmax(dim=-1)

    def mode(self) -> th.Tensor:
        return th.softmax(self._normalized(), dim=-1).argmax(dim=-1)  # argmax of the probabilities, as sb3-contrib

    def actions_from_params(self, action_logits: th.Tensor, deterministic: bool = False) -> th.Tensor:
        self.proba_distribution(action_logits)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, action_logits: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        actions = self.actions_from_params(action_logits)
        return actions, self.log_prob(actions)


class TensorMaskablePolicy(MaskableActorCriticPolicy):
    """sb3-contrib's masked actor-critic with :class:`TensorMaskedMultiCategorical` for ``MultiDiscrete`` actions
    (same parameters, same state dict)."""

    def _build(self, lr_schedule) -> None:
        if isinstance(self.action_space, spaces.MultiDiscrete):
            self.action_dist = TensorMaskedMultiCategorical(self.action_space.nvec)
        super()._build(lr_schedule)
