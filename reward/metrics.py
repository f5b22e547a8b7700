"""Counters of a reward scorer: what was scored, what was invalid and why, what the judge failed on, latency.

Shared by the reward server (``GET /metrics``, JSON or Prometheus text) and by ``longtrace reward score``'s
summary; the trainer logs the same numbers under ``rollout/*``.
"""
from __future__ import annotations

import re
import threading
from collections import Counter

from .schema import GroupResult, SampleReward

LATENCY_BUCKETS_S = (0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, float("inf"))
_ERROR_KIND = re.compile(r"^(timeout|HTTP \d+|unparseable|malformed|judge raised)", re.IGNORECASE)


def judge_error_kind(message: str) -> str:
    m = _ERROR_KIND.match(message)
    return m.group(1).lower().replace(" ", "_") if m else "other"


class RewardMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.bad_requests: Counter[str] = Counter()
        self.invalid: Counter[str] = Counter()
        self.judge_errors: Counter[str] = Counter()
        self.samples = self.correct = self.judge_cache_hits = 0
        self.groups = self.groups_dropped = 0
        self.reward_sum = self.outcome_sum = self.rubric_sum = 0.0
        self.latency_count, self.latency_sum, self.latency_max = 0, 0.0, 0.0
        self.latency_hist = [0] * len(LATENCY_BUCKETS_S)

    def observe_request(self, route: str, ok: bool = True) -> None:
        with self._lock:
            (self.requests if ok else self.bad_requests)[route] += 1

    def observe_sample(self, s: SampleReward) -> None:
        with self._lock:
            self.samples += 1
            self.correct += s.correct
            self.judge_cache_hits += s.judge_cached
            self.reward_sum += s.reward
            self.outcome_sum += s.outcome_reward
            self.rubric_sum += s.rubric_reward
            if s.invalid_reason:
                self.invalid[s.invalid_reason] += 1
            if s.judge_error:
                self.judge_errors[judge_error_kind(s.judge_error)] += 1

    def observe_group(self, g: GroupResult) -> None:
        with self._lock:
            self.groups += 1
            self.groups_dropped += g.dropped is not None

    def observe_latency(self, seconds: float) -> None:
        with self._lock:
            self.latency_count += 1
            self.latency_sum += seconds
            self.latency_max = max(self.latency_max, seconds)
            for i, bound in enumerate(LATENCY_BUCKETS_S):
                if seconds <= bound:
                    self.latency_hist[i] += 1
                    break

    def snapshot(self) -> dict:
        with self._lock:
            n = max(self.samples, 1)
            return {
                "requests": dict(self.requests),
                "bad_requests": dict(self.bad_requests),
                "samples": self.samples,
                "correct": self.correct,
                "accuracy": self.correct / n,
                "reward_mean": self.reward_sum / n,
                "outcome_mean": self.outcome_sum / n,
                "rubric_mean": self.rubric_sum / n,
                "invalid": dict(self.invalid),
                "invalid_total": sum(self.invalid.values()),
                "judge_errors": dict(self.judge_errors),
                "judge_errors_total": sum(self.judge_errors.values()),
                "judge_cache_hits": self.judge_cache_hits,
                "groups": self.groups,
                "groups_dropped": self.groups_dropped,
                "latency_s": {
                    "count": self.latency_count,
                    "mean": self.latency_sum / max(self.latency_count, 1),
                    "max": self.latency_max,
                    "buckets": {("+Inf" if b == float("inf") else f"{b:g}"): c for b, c in zip(LATENCY_BUCKETS_S, self.latency_hist)},
                },
            }

    def prometheus(self) -> str:
        s = self.snapshot()
        lines = []

        def emit(name: str, value: float, labels: str = "") -> None:
            lines.append(f"longtrace_reward_{name}{labels} {value}")

        for route, n in s["requests"].items():
            emit("requests_total", n, f'{{route="{route}"}}')
        for route, n in s["bad_requests"].items():
            emit("bad_requests_total", n, f'{{route="{route}"}}')
        for reason, n in s["invalid"].items():
            emit("invalid_total", n, f'{{reason="{reason}"}}')
        for kind, n in s["judge_errors"].items():
            emit("judge_errors_total", n, f'{{kind="{kind}"}}')
        for key in ("samples", "correct", "judge_cache_hits", "groups", "groups_dropped"):
            emit(f"{key}_total", s[key])
        cumulative = 0
        for bound, count in s["latency_s"]["buckets"].items():
            cumulative += count
            emit("latency_seconds_bucket", cumulative, f'{{le="{bound}"}}')
        emit("latency_seconds_sum", self.latency_sum)
        emit("latency_seconds_count", s["latency_s"]["count"])
        return "\n".join(lines) + "\n"
