"""The rollout manager: a Ray actor that owns the engines (behind sglang-router), the prompt data and the reward.

    generate(rollout_id) -> (samples, metrics)     one rollout step: GRPO groups generated and scored
    evaluate(name, path) -> metrics                k samples per eval prompt, reward with eta = 0: mean, pass@k
    engine_urls() / sleep(tags) / wake(tags, go)   for weight sync and the colocated memory hand-over
    state_dict() / load_state_dict()               the data cursor, saved with trainer checkpoints

The actor's coroutines all run in one long-lived loop on a thread of its own (async_loop.py): the rollout client's
connection pool lives in it.
"""
from __future__ import annotations

import logging
from argparse import Namespace
from collections import Counter
from pathlib import Path
from typing import Any

import ray

from .arguments import sglang_server_args
from .async_loop import LoopThread
from .data_source import EpochSource, PromptRecords
from .rollout import (PromptSource, RolloutConfig, default_stop_ids, generate_rollout, rollout_config_from_args)
from .rollout_client import ClientConfig, RolloutClient, SamplingConfig
from .sample import Sample

log = logging.getLogger("longtrace.rollout")


def reward_metrics(groups: list[list[Sample]], prefix: str = "rollout") -> dict[str, float]:
    """Reward parts of the accepted samples: means, accuracy, invalid reasons, judge errors, zero-variance groups."""
    samples = [s for g in groups for s in g]
    if not samples:
        return {}
    parts = [s.reward_parts or {} for s in samples]
    n = len(samples)
    out = {
        f"{prefix}/reward_mean": sum(s.reward or 0.0 for s in samples) / n,
        f"{prefix}/outcome_mean": sum(p.get("outcome_reward", 0.0) for p in parts) / n,
        f"{prefix}/rubric_mean": sum(p.get("rubric_reward", 0.0) for p in parts) / n,
        f"{prefix}/accuracy": sum(bool(p.get("correct")) for p in parts) / n,
        f"{prefix}/invalid_ratio": sum(not p.get("valid", True) for p in parts) / n,
        f"{prefix}/judge_errors": float(sum(p.get("judge_error") is not None for p in parts)),
        f"{prefix}/groups_dropped": float(sum(any("group_dropped" in (s.reward_parts or {}) for s in g) for g in groups)),
        f"{prefix}/zero_std_groups": float(sum(len({s.reward for s in g}) == 1 for g in groups)),
        f"{prefix}/response_len/mean": sum(s.response_length for s in samples) / n,
        f"{prefix}/response_len/max": float(max(s.response_length for s in samples)),
        f"{prefix}/truncated_ratio": sum(s.status == "truncated" for s in samples) / n,
    }
    for reason, count in Counter(p.get("invalid_reason") for p in parts if p.get("invalid_reason")).items():
        out[f"{prefix}/invalid/{reason}"] = float(count)
    return out


class _Evaluation:
    """A RewardFn that always scores in evaluation mode (eta forced to 0)."""

    def __init__(self, inner):
        self.inner = inner

    async def score_group(self, requests, evaluation: bool = False):
        return await self.inner.score_group(requests, evaluation=True)


@ray.remote
class RolloutManager:
    def __init__(self, args: dict, placement: dict):
        from transformers import AutoTokenizer

        from reward import RewardScorer
        from reward.client import RewardClient

        from .ray_engines import RayEngineManager
        from .router import RouterConfig
        from .sglang_engine import EngineConfig

        quiet_logging()
        self.args = a = Namespace(**args)
        self.tokenizer = AutoTokenizer.from_pretrained(a.hf_checkpoint)
        self.stop_ids = a.rollout_stop_token_ids if a.rollout_stop_token_ids is not None else default_stop_ids(self.tokenizer)
        self.cfg: RolloutConfig = rollout_config_from_args(a, self.stop_ids)
        gpu = not a.cpu
        engine_cfg = EngineConfig(
            model_path=a.hf_checkpoint, backend=a.rollout_backend, num_engines=a.num_engines,
            gpus_per_engine=a.rollout_num_gpus_per_engine, mem_fraction_static=a.sglang_mem_fraction_static,
            context_length=a.sglang_context_length, enable_memory_saver=gpu and a.colocate,
            extra_args=sglang_server_args(a), device="cuda" if gpu else "cpu", torch_threads=a.torch_threads,
            # CPU engines compute in the trainer's precision, so that rollout and training log-probs agree
            dtype=None if gpu else {"bf16": "bfloat16", "fp32": "float32"}[a.dtype], python=a.sglang_python,
            health_timeout_s=a.engine_health_timeout, log_dir=str(Path(a.run_dir) / "engines"),
            router=RouterConfig(policy=a.router_policy),
        )
        self.engines = RayEngineManager(engine_cfg, placement["pg"],
                                        placement["engine_bundles"], placement["engine_gpus"],
                                        gpu_fraction=0.2 if gpu else 0.0)
        self.engines.start()
        self.engines.start_watchdog(10.0)
        self.client = RolloutClient(
            ClientConfig(url=self.engines.url, concurrency=a.sglang_server_concurrency * a.num_engines,
                         request_timeout_s=a.rollout_request_timeout, retries=a.rollout_retries),
            worker_urls=lambda: self.engines.engine_urls, on_fault=self.engines.recover)
        self.reward_fn = RewardClient(a.reward_url) if a.reward_url else RewardScorer(a.reward_config)
        self.source = None
        if a.prompt_data:
            records = PromptRecords(a.prompt_data, a.input_key, a.label_key, a.metadata_key)
            self.source = EpochSource(records, self.tokenizer, a.n_samples_per_prompt, a.rollout_shuffle, a.rollout_seed,
                                      chat_template_kwargs=a.apply_chat_template_kwargs)
        self.loop = LoopThread("rollout-loop")
        self._run = self.loop.run
        self._control_http = None  # httpx client of the memory hand-over routes (created in the loop on first use)

    # ---- data
    def num_prompts(self) -> int:
        return len(self.source.base) if self.source else 0

    def state_dict(self) -> dict:
        return self.source.state_dict() if self.source else {}

    def load_state_dict(self, state: dict) -> None:
        if self.source and state:
            self.source.load_state_dict(state)

    # ---- rollout
    def generate(self, rollout_id: int) -> tuple[list[dict], dict]:
        result = self._run(
            generate_rollout(self.cfg, self.client, self.source, self.reward_fn, self.tokenizer))
        for i, reason in self.source.rejects:
            log.warning("prompt record %d rejected: %s", i, reason)
        self.source.rejects.clear()
        metrics = {**result.metrics, **reward_metrics(result.groups)}
        if self.engines.events:
            metrics["rollout/engine_faults"] = float(len(self.engines.events))
        return [s.to_dict() for s in result.samples], metrics

    def evaluate(self, name: str, path: str) -> dict[str, float]:
        a = self.args
        records = list(PromptRecords(path, a.input_key, a.label_key, a.metadata_key, split="eval" if Path(path).is_dir() else "train"))
        k = a.n_samples_per_eval_prompt
        cfg = RolloutConfig(
            rollout_batch_size=len(records), n_samples_per_prompt=k,
            sampling=SamplingConfig(max_response_len=a.eval_max_response_len, max_context_len=a.rollout_max_context_len,
                                    temperature=a.eval_temperature, top_p=a.eval_top_p, top_k=a.eval_top_k,
                                    stop_token_ids=self.stop_ids))
        source = PromptSource(records, self.tokenizer, k, chat_template_kwargs=a.apply_chat_template_kwargs)
        result = self._run(
            generate_rollout(cfg, self.client, source, _Evaluation(self.reward_fn), self.tokenizer))
        groups = result.groups
        out = {f"eval/{name}/{key.split('/', 1)[1]}": v for key, v in reward_metrics(groups, "x").items()}
        out[f"eval/{name}/pass@{k}"] = sum(any((s.reward_parts or {}).get("correct") for s in g) for g in groups) / max(len(groups), 1)
        out[f"eval/{name}/prompts"] = float(len(groups))
        out[f"eval/{name}/prompts_failed"] = float(len(records) - len(groups))
        return out

    # ---- engines
    def engine_urls(self) -> list[str]:
        return self.engines.engine_urls

    def sleep(self, tags: list[str]) -> None:
        """Colocated runs: the engines pause, get idle (SGLang asserts it) and free ``tags`` while the trainer works.
        The watchdog leaves them alone until ``wake(..., resume_generation=True)``."""
        from .weight_sync import release_memory

        self.engines.set_state("released")
        self._run(release_memory(self._controls(), tags))

    def wake(self, tags: list[str], resume_generation: bool = True) -> None:
        """Give ``tags`` back to the engines; ``resume_generation`` continues generating (after the last tags)."""
        from .weight_sync import resume_memory

        self._run(resume_memory(self._controls(), tags, resume_generation))
        if resume_generation:
            self.engines.set_state("up")

    def _controls(self):
        import httpx

        from .weight_sync import EngineControl

        if self._control_http is None:  # used only inside self.loop
            self._control_http = httpx.AsyncClient(timeout=600, trust_env=False)
        return [EngineControl(u, self._control_http) for u in self.engines.engine_urls]

    def shutdown(self) -> None:
        try:
            self._run(self.client.aclose())
            self._run(self.reward_fn.aclose())
            if self._control_http is not None:
                self._run(self._control_http.aclose())
        finally:
            self.engines.stop()
            self.loop.stop()

    def ping(self) -> bool:
        return True


def quiet_logging() -> None:
    """INFO for the project, WARNING for HTTP clients (the engine watchdog polls /health every few seconds)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


def placement_info(placement) -> dict[str, Any]:
    """What the manager needs of the run's Placement (picklable)."""
    return {"pg": placement.pg, "engine_bundles": [placement.bundles[b] for b in placement.engine_bundles],
            "engine_gpus": placement.engine_gpus}
