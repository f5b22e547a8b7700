"""GRPO advantages and the clipped policy-gradient loss with KL, entropy and train-inference mismatch correction.

Per response token t (mask_t = loss mask):
  ratio_t = exp(logp_t - old_logp_t)
  pg_t    = max(-A * ratio_t, -A * clip(ratio_t, 1 - eps_clip, 1 + eps_clip_high))   (dual clip optional)
  pg_t   *= w_t       TIS:    w_t = clamp(exp(old_logp_t - rollout_logp_t), low, high)
                      IcePop: w_t = exp(old_logp_t - rollout_logp_t) inside [low, high], else 0
  loss_t  = pg_t + kl_coef * KL_t(logp || ref) - entropy_coef * entropy_t
and the loss of a step is sum_t weight_t * mask_t * loss_t, where the weights make it either the token mean over
the whole global batch (``calculate_per_token_loss``) or the mean over samples of per-sample token means.
When the batch is used for one optimiser step (on-policy), old_logp is the current log-prob detached, so the
ratio is 1 and the gradient is the plain policy gradient, and a separate old-log-prob pass is skipped.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import torch

KL_TYPES = ("k1", "k2", "k3", "low_var_kl")
TIS_MODES = ("tis", "icepop")
# slime chooses the correction by function path (--custom-tis-function-path); its two built-ins, by mode
SLIME_TIS_FUNCTIONS = {"tis": "slime.backends.megatron_utils.loss.vanilla_tis_function",
                       "icepop": "slime.backends.megatron_utils.loss.icepop_function"}


@dataclass
class LossConfig:
    eps_clip: float = 0.2
    eps_clip_high: float = 0.28
    eps_clip_c: float | None = None  # dual-clip constant (> 1) for negative advantages; None = off
    kl_loss_coef: float = 0.0
    kl_loss_type: str = "low_var_kl"
    entropy_coef: float = 0.0
    calculate_per_token_loss: bool = False
    tis: str | None = None  # "tis", "icepop" or None
    tis_clip_low: float = 0.5
    tis_clip_high: float = 2.0

    def check(self) -> None:
        problems = []
        if self.kl_loss_type not in KL_TYPES:
            problems.append(f"kl_loss_type={self.kl_loss_type!r} is not one of {', '.join(KL_TYPES)}")
        if self.tis is not None and self.tis not in TIS_MODES:
            problems.append(f"tis={self.tis!r} is not one of {', '.join(TIS_MODES)}")
        if not (0 <= self.eps_clip < 1 and self.eps_clip_high >= 0):
            problems.append(f"eps_clip={self.eps_clip}, eps_clip_high={self.eps_clip_high} out of range")
        if self.eps_clip_c is not None and self.eps_clip_c <= 1:
            problems.append(f"eps_clip_c={self.eps_clip_c} must be > 1")
        if self.tis is not None and not (0 <= self.tis_clip_low < 1 < self.tis_clip_high):
            problems.append(f"tis clip range [{self.tis_clip_low}, {self.tis_clip_high}] must contain 1")
        if problems:
            raise ValueError("invalid loss config:\n  " + "\n  ".join(problems))


@dataclass
class LossStats:
    """Metrics of the loss, mergeable across micro-batches and reducible across ranks.

    ``means``: name -> [masked sum, token count]; ``totals``: summed as is; ``maxima`` / ``minima``."""

    means: dict[str, list[float]] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
    maxima: dict[str, float] = field(default_factory=dict)
    minima: dict[str, float] = field(default_factory=dict)

    def add_mean(self, name: str, values: torch.Tensor, mask: torch.Tensor) -> None:
        s, c = self.means.setdefault(name, [0.0, 0.0])
        self.means[name] = [s + float((values.detach() * mask).sum()), c + float(mask.sum())]

    def merge(self, other: "LossStats") -> "LossStats":
        for k, (s, c) in other.means.items():
            s0, c0 = self.means.get(k, [0.0, 0.0])
            self.means[k] = [s0 + s, c0 + c]
        for k, v in other.totals.items():
            self.totals[k] = self.totals.get(k, 0.0) + v
        for k, v in other.maxima.items():
            self.maxima[k] = max(self.maxima.get(k, v), v)
        for k, v in other.minima.items():
            self.minima[k] = min(self.minima.get(k, v), v)
        return self

    def all_reduce(self, group=None) -> "LossStats":
        """Combine the stats of every rank in ``group`` (collective; every rank must call it)."""
        import torch.distributed as dist

        if not dist.is_initialized() or dist.get_world_size(group) == 1:
            return self
        gathered: list = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, self, group=group)
        merged = LossStats()
        for stats in gathered:
            merged.merge(stats)
        return merged

    def summary(self) -> dict[str, float]:
        out = {k: s / c for k, (s, c) in self.means.items() if c}
        out.update(self.totals)
        out.update(self.maxima)
        out.update(self.minima)
        return out


def grpo_advantages(rewards: Sequence[float], group_ids: Sequence, std_normalize: bool = True, eps: float = 1e-6) -> list[float]:
    """Reward minus its group mean, divided by (group std + eps) when ``std_normalize`` (unbiased std, as slime).

    A group of one gets advantage 0 (nothing to compare with)."""
    groups: dict = defaultdict(list)
    for i, g in enumerate(group_ids):
        groups[g].append(i)
    adv = [0.0] * len(rewards)
    for members in groups.values():
        r = torch.tensor([float(rewards[i]) for i in members], dtype=torch.float64)
        centred = r - r.mean()
        if std_normalize and len(members) > 1:
            centred = centred / (r.std(unbiased=True) + eps)
        for i, a in zip(members, centred.tolist()):
            adv[i] = a
    return adv


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from sampled tokens."""
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio.square()
    k3 = torch.exp(-log_ratio) - 1 + log_ratio  # exp(ref - logp) - 1 - (ref - logp)
    return k3.clamp(-10, 10) if kind == "low_var_kl" else k3  # low_var_kl = k3 clamped


def mismatch_weight(old_logp: torch.Tensor, rollout_logp: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    ratio = torch.exp(old_logp - rollout_logp)
    if cfg.tis == "tis":
        return ratio.clamp(cfg.tis_clip_low, cfg.tis_clip_high)
    inside = (ratio >= cfg.tis_clip_low) & (ratio <= cfg.tis_clip_high)
    return torch.where(inside, ratio, torch.zeros_like(ratio))


def policy_loss(
    logp: torch.Tensor,
    *,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    token_weight: torch.Tensor,
    cfg: LossConfig,
    old_logp: torch.Tensor | None = None,
    rollout_logp: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, LossStats]:
    """The weighted loss sum of one micro-batch, and its metrics."""
    old = logp.detach() if old_logp is None else old_logp
    ratio = torch.exp(logp - old)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - cfg.eps_clip, 1 + cfg.eps_clip_high)
    pg = torch.maximum(unclipped, clipped)
    clip_active = (clipped > unclipped).float()
    if cfg.eps_clip_c is not None:
        pg = torch.where(advantages < 0, torch.minimum(pg, -advantages * cfg.eps_clip_c), pg)
    stats = LossStats()
    mask = loss_mask
    if cfg.tis is not None:
        if rollout_logp is None:
            raise ValueError(f"tis={cfg.tis!r} needs the rollout log-probs of every sample")
        w = mismatch_weight(old.detach(), rollout_logp, cfg)
        pg = pg * w
        stats.add_mean("tis_weight", w, mask)
        if cfg.tis == "icepop":
            stats.add_mean("icepop_masked_frac", (w == 0).float(), mask)
        else:
            stats.add_mean("tis_clipfrac", ((w == cfg.tis_clip_low) | (w == cfg.tis_clip_high)).float(), mask)
    loss = pg
    stats.add_mean("pg_loss", pg, mask)
    if ref_logp is not None and cfg.kl_loss_coef != 0:
        kl = kl_penalty(logp, ref_logp, cfg.kl_loss_type)
        loss = loss + cfg.kl_loss_coef * kl
        stats.add_mean("kl_loss", kl, mask)
    if entropy is not None:
        stats.add_mean("entropy", entropy, mask)
        if cfg.entropy_coef != 0:
            loss = loss - cfg.entropy_coef * entropy
    total = (loss * mask * token_weight).sum()

    stats.add_mean("pg_clipfrac", clip_active, mask)
    stats.add_mean("approx_kl", 0.5 * (logp.detach() - old).square(), mask)
    stats.add_mean("ratio", ratio, mask)
    stats.add_mean("logprob", logp, mask)
    if rollout_logp is not None:
        stats.add_mean("train_rollout_logprob_abs_diff", (old.detach() - rollout_logp).abs(), mask)
    kept = ratio.detach()[mask > 0]
    if kept.numel():
        stats.maxima["ratio_max"] = float(kept.max())
        stats.minima["ratio_min"] = float(kept.min())
    stats.totals["loss"] = float(total.detach())
    stats.totals["tokens"] = float(mask.sum())
    return total, stats
