"""Metrics of a run: wandb (online, offline or off), tensorboard, ``<run dir>/metrics.jsonl`` and a console table.

Namespaces: ``train/*`` (loss parts, clipping, KL, entropy, mismatch correction, grad norm, lr), ``rollout/*``
(reward parts, invalid reasons, judge errors, response lengths, truncation, sample/group counts), ``perf/*``
(per-phase seconds, tokens/s per GPU, TFLOP/s, MFU, weight-sync time), ``eval/*``. Every step is keyed by
``rollout/step``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

log = logging.getLogger("longtrace.train")

TABLE_COLUMNS = (  # (header, metric, format)
    ("step", "rollout/step", "{:.0f}"),
    ("reward", "rollout/reward_mean", "{:.3f}"),
    ("accuracy", "rollout/accuracy", "{:.3f}"),
    ("rubric", "rollout/rubric_mean", "{:.3f}"),
    ("invalid", "rollout/invalid_ratio", "{:.2f}"),
    ("resp len", "rollout/response_len/mean", "{:.0f}"),
    ("loss", "train/loss", "{:+.4f}"),
    ("grad norm", "train/grad_norm", "{:.3f}"),
    ("tok/s/gpu", "perf/train_tokens_per_s_per_gpu", "{:.0f}"),
    ("rollout s", "perf/rollout_time", "{:.1f}"),
    ("train s", "perf/train_time", "{:.1f}"),
    ("step s", "perf/step_time", "{:.1f}"),
)


class Tracker:
    def __init__(self, run_dir: str, config: dict, *, use_wandb: bool = False, wandb_project: str = "longtrace-rl",
                 wandb_group: str | None = None, wandb_run_name: str | None = None, wandb_mode: str = "online",
                 wandb_dir: str | None = None, use_tensorboard: bool = False, tensorboard_dir: str | None = None,
                 console_table: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(config, indent=2, default=str))
        self._metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")
        self.wandb = None
        if use_wandb and wandb_mode != "disabled":
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            # One wandb run per run dir: a resumed training (--load) keeps logging into the run it started.
            id_file = self.run_dir / "wandb_run_id"
            run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
            id_file.write_text(run_id)
            self.wandb = wandb.init(project=wandb_project, group=wandb_group, name=wandb_run_name, dir=wandb_dir or run_dir,
                                    mode=wandb_mode, config=config, id=run_id, resume="allow")
            for ns in ("train", "rollout", "perf"):
                self.wandb.define_metric(f"{ns}/*", step_metric="rollout/step")
            self.wandb.define_metric("eval/*", step_metric="eval/step")
        self.tb = None
        if use_tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(tensorboard_dir or str(self.run_dir / "tensorboard"))
        # Wide enough for every column even when stdout is a pipe or a log file (rich would assume 80 columns).
        self.console = Console(width=max(Console().width, 12 * len(TABLE_COLUMNS))) if console_table else None
        self._header_printed = False
        self.total_steps: int | None = None  # shown as "step/total" in the console table

    def log(self, metrics: dict[str, Any], step: int) -> None:
        row = {k: float(v) if isinstance(v, bool) else v for k, v in metrics.items() if isinstance(v, (int, float))}
        bad = sorted(k for k, v in row.items() if not math.isfinite(v))
        if bad:  # kept (NaN/inf reach wandb and tensorboard as such); JSON has no NaN, so metrics.jsonl gets null
            log.warning("step %d: non-finite metric(s) %s", step, ", ".join(bad))
        finite = {k: (v if math.isfinite(v) else None) for k, v in row.items()}
        self._metrics.write(json.dumps({"step": step, **finite}) + "\n")
        self._metrics.flush()
        if self.wandb is not None:
            self.wandb.log(row)
        if self.tb is not None:
            for k, v in row.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()
        if self.console is not None and "rollout/step" in row:
            self._print_row(row)
        if self.console is not None and "eval/step" in row:
            self._print_eval(row)

    def rewind(self, start: int) -> int:
        """A run resumed at rollout ``start`` re-runs the steps logged after its checkpoint: move their rows
        (rollout steps >= start, evals after start) from metrics.jsonl to ``metrics.superseded.jsonl`` so that
        metrics.jsonl has one row per step. Returns the number of rows moved. wandb and tensorboard keep what
        they received (see docs/training.md)."""
        path = self.run_dir / "metrics.jsonl"
        self._metrics.close()
        keep, moved = [], []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash: not ours to judge, kept aside
                moved.append(line)
                continue
            step = row.get("step", -1)
            later = step > start if "eval/step" in row else step >= start
            (moved if later else keep).append(line)
        if moved:
            with open(self.run_dir / "metrics.superseded.jsonl", "a", encoding="utf-8") as f:
                f.writelines(m + "\n" for m in moved)
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
            tmp.replace(path)
            log.info("resumed at rollout %d: %d metrics row(s) of the interrupted run moved to %s", start, len(moved),
                     self.run_dir / "metrics.superseded.jsonl")
        self._metrics = open(path, "a", encoding="utf-8")
        return len(moved)

    def _print_row(self, row: dict) -> None:
        table = Table(show_header=not self._header_printed, show_edge=False, box=None, pad_edge=False)
        for header, _, _ in TABLE_COLUMNS:
            table.add_column(header, justify="right", min_width=9)
        cells = [fmt.format(row[key]) if key in row else "-" for _, key, fmt in TABLE_COLUMNS]
        if self.total_steps:
            cells[0] = f"{row['rollout/step'] + 1:.0f}/{self.total_steps}"  # steps done so far, 1-based
        table.add_row(*cells)
        self.console.print(table)
        self._header_printed = True

    def _print_eval(self, row: dict) -> None:
        sets = sorted({k.split("/")[1] for k in row if k.startswith("eval/") and k.count("/") >= 2})
        for name in sets:
            parts = [f"{m}={row[f'eval/{name}/{m}']:.3f}" for m in ("reward_mean", "accuracy", "rubric_mean", "invalid_ratio")
                     if f"eval/{name}/{m}" in row]
            self.console.print(f"  eval {name} @ step {row['eval/step']:.0f}: " + " ".join(parts))

    def finish(self) -> None:
        self._metrics.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.tb is not None:
            self.tb.close()

