"""Batch scoring of a JSONL file: ``longtrace reward score --input X.jsonl --output Y.jsonl``.

Each input line is a reward request (``RewardRequest``, or a slime-layout record with
``metadata.extra_reward_info``). Lines that share a ``group_id`` and stand next to each other form one GRPO
group and are scored together (group normalisation + combination); lines without ``group_id`` are scored on
their own. Output lines carry ``key`` (``id:<sample_id>`` or ``line:<n>``), the line number and the
``SampleReward`` fields, in input order. The job is resumable: rerunning skips keys already in the output.
Bad lines (not JSON, schema errors, duplicate ids, split groups, unusable rubrics) go to the rejects file with
their line numbers and never stop the job.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from pydantic import ValidationError

from .jsonl import Rejects, ResumableOutput, read_jsonl
from .metrics import RewardMetrics
from .schema import GroupResult, RewardRequest, describe_validation_error, request_from_record
from .scorer import RewardFn, RewardInputError


@dataclass
class Item:
    line: int
    key: str
    request: RewardRequest


@dataclass
class BatchSummary:
    lines_scored: int = 0
    lines_skipped: int = 0  # already in the output (resume)
    rejects: int = 0
    metrics: RewardMetrics = field(default_factory=RewardMetrics)


def scoring_units(path: Path, rejects: Rejects) -> Iterator[list[Item]]:
    """Groups of adjacent lines sharing a group_id, or single ungrouped lines; bad lines go to ``rejects``."""
    seen_keys: set[str] = set()
    closed_groups: dict = {}  # group_id -> last line of the group, once it has ended
    group_id, group_items = None, []

    def flush():
        nonlocal group_id, group_items
        unit = group_items
        if group_id is not None:
            closed_groups[group_id] = unit[-1].line if unit else None
        group_id, group_items = None, []
        return unit

    for line, obj in read_jsonl(path):
        if isinstance(obj, Exception):
            rejects.add(line, f"not valid JSON: {obj.msg} at column {obj.colno}", obj.doc)
            continue
        try:
            request = request_from_record(obj)
        except ValidationError as e:
            rejects.add(line, describe_validation_error(e), obj)
            continue
        key = f"id:{request.sample_id}" if request.sample_id is not None else f"line:{line}"
        if key in seen_keys:
            rejects.add(line, f"sample_id {request.sample_id!r} appears more than once", obj)
            continue
        seen_keys.add(key)
        item = Item(line, key, request)
        gid = request.group_id
        if gid is not None and gid == group_id:
            group_items.append(item)
            continue
        if group_items:
            yield flush()
        if gid is None:
            yield [item]
        elif gid in closed_groups:
            rejects.add(line, f"group_id {gid!r} appears again after its group ended at line {closed_groups[gid]}; "
                              "a group's lines must be adjacent", obj)
        else:
            group_id, group_items = gid, [item]
    if group_items:
        yield flush()


async def _score_unit(fn: RewardFn, unit: list[Item], evaluation: bool) -> GroupResult:
    if len(unit) == 1 and unit[0].request.group_id is None:
        sample = await fn.score(unit[0].request, evaluation=evaluation)
        return GroupResult(rewards=[sample.reward], samples=[sample], rubric_hat=[sample.rubric_reward],
                           rubric_max=sample.rubric_reward)
    return await fn.score_group([i.request for i in unit], evaluation=evaluation)


async def score_file(
    fn: RewardFn,
    input_path: str | Path,
    output_path: str | Path,
    rejects_path: str | Path,
    concurrency: int = 16,
    evaluation: bool = False,
    resume: bool = True,
    on_progress: Callable[[int], None] = lambda line: None,
) -> BatchSummary:
    """Score every line; ``on_progress(line)`` reports the last input line finished (for a progress bar)."""
    input_path = Path(input_path)
    if not input_path.is_file():
        raise FileNotFoundError(f"input file not found: {input_path}")
    summary = BatchSummary()
    rejects = Rejects(rejects_path, input_path)
    out = ResumableOutput(output_path, key_field="key", resume=resume)
    pending: deque[tuple[list[Item], asyncio.Task]] = deque()

    def write(unit: list[Item], result: GroupResult) -> None:
        for item, sample, r_hat in zip(unit, result.samples, result.rubric_hat):
            if item.key in out.done:
                continue
            out.write({
                "key": item.key, "line": item.line, "sample_id": item.request.sample_id,
                "group_id": item.request.group_id, **sample.model_dump(), "rubric_hat": r_hat,
                "group_dropped": result.dropped,
            })
            summary.lines_scored += 1
            summary.metrics.observe_sample(sample)
        summary.metrics.observe_group(result)

    async def finish_oldest() -> None:
        unit, task = pending.popleft()
        try:
            write(unit, await task)
        except RewardInputError as e:
            for item in unit:
                rejects.add(item.line, str(e), item.request.model_dump(exclude_none=True))
        on_progress(unit[-1].line)

    try:
        for unit in scoring_units(input_path, rejects):
            if all(item.key in out.done for item in unit):
                summary.lines_skipped += len(unit)
                on_progress(unit[-1].line)
                continue
            pending.append((unit, asyncio.create_task(_score_unit(fn, unit, evaluation))))
            while len(pending) >= concurrency:
                await finish_oldest()
        while pending:
            await finish_oldest()
    finally:
        for _, task in pending:
            task.cancel()
        out.close()
        rejects.close()
        summary.rejects = rejects.count
    return summary
