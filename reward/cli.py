"""``longtrace reward``: score | serve | bench.

  longtrace reward score --input X.jsonl --output Y.jsonl [--rejects R.jsonl] [--concurrency 16] [--evaluation]
                         [--no-resume] [--reward-url URL] [--show N] [reward flags]
  longtrace reward serve [--host 127.0.0.1] [--port 7248] [--max-body-mb 64] [reward flags]
  longtrace reward bench [--responses 1024] [--kb 130] [--entities 20] [--group-size 8] [--regimes ...] [reward flags]

Reward flags (judge, rubric, combination, validity) are listed by ``--help`` and documented in docs/reward.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .config import add_reward_args, reward_config_from_args

BENCH_REGIMES = ("rare/ASCII", "rare/non-ASCII", "frequent/ASCII", "frequent/non-ASCII")  # = bench.REGIMES

console = Console(stderr=True)  # progress and logs
out = Console(width=None if sys.stdout.isatty() else 160)  # tables


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longtrace reward", description="Outcome + entity-rubric rewards.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("score", help="score a JSONL file of responses (resumable)")
    p.add_argument("--input", required=True, type=Path, help="JSONL of reward requests")
    p.add_argument("--output", required=True, type=Path, help="JSONL of scores (appended; resumable)")
    p.add_argument("--rejects", type=Path, help="bad input lines go here (default: <output>.rejects.jsonl)")
    p.add_argument("--concurrency", type=int, default=16, help="groups scored at once (LLM judge calls overlap)")
    p.add_argument("--evaluation", action="store_true", help="evaluation mode: eta forced to 0")
    p.add_argument("--no-resume", action="store_true", help="start the output afresh instead of skipping finished lines")
    p.add_argument("--reward-url", help="score through a running reward server instead of in-process")
    p.add_argument("--show", type=int, default=0, metavar="N", help="print the first N scored lines as a table")
    add_reward_args(p)

    p = sub.add_parser("serve", help="run the reward server")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 opens it up)")
    p.add_argument("--port", type=int, default=7248)
    p.add_argument("--max-body-mb", type=float, default=64.0, help="request size limit")
    p.add_argument("--log-level", default="info")
    add_reward_args(p)

    p = sub.add_parser(
        "bench", help="rubric scoring throughput, one core, four regimes (MB/s and the ratio to a regex pass)"
    )
    p.add_argument("--responses", type=int, default=1024)
    p.add_argument("--kb", type=float, default=130.0, help="size of each response in KB")
    p.add_argument("--entities", type=int, default=20, help="gold entities per question")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--non-ascii", type=float, default=0.02,
                   help="non-ASCII regimes: share of words with a non-ASCII character (accents, dashes, CJK)")
    p.add_argument("--regimes", default=",".join(BENCH_REGIMES),
                   help=f"comma-separated subset of {', '.join(BENCH_REGIMES)}")
    p.add_argument("--no-longtracerl", action="store_true", help="skip the LongTraceRL-code column (the slowest)")
    add_reward_args(p)
    return parser


def _print_config(cfg) -> None:
    console.print("[bold]reward config[/bold] " + json.dumps(cfg.to_dict(), default=str))


def _cmd_score(args: argparse.Namespace, cfg) -> int:
    from .batch import score_file
    from .client import RewardClient
    from .jsonl import count_lines
    from .scorer import RewardScorer

    if not args.input.is_file():
        console.print(f"[red]error:[/red] input file not found: {args.input}")
        return 2
    rejects = args.rejects or args.output.with_suffix(".rejects.jsonl")
    fn = RewardClient(args.reward_url) if args.reward_url else RewardScorer(cfg)
    if not args.reward_url:
        _print_config(cfg)
    total = count_lines(args.input)
    columns = (TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("score", total=total)

        async def run():
            try:
                return await score_file(
                    fn, args.input, args.output, rejects, concurrency=args.concurrency, evaluation=args.evaluation,
                    resume=not args.no_resume, on_progress=lambda line: progress.update(task, completed=line),
                )
            finally:
                await fn.aclose()

        summary = asyncio.run(run())
        progress.update(task, completed=total)

    if args.show:
        _show_rows(args.output, args.show)
    m = summary.metrics.snapshot()
    table = Table(title=f"scored {args.input}", show_header=False)
    rows = [
        ("lines scored now", summary.lines_scored),
        ("lines already done (resume)", summary.lines_skipped),
        ("lines rejected", f"{summary.rejects}" + (f"  -> {rejects}" if summary.rejects else "")),
        ("accuracy", f"{m['accuracy']:.3f}"),
        ("mean reward", f"{m['reward_mean']:.3f}"),
        ("mean rubric (raw)", f"{m['rubric_mean']:.3f}"),
        ("invalid", ", ".join(f"{k}={v}" for k, v in m["invalid"].items()) or "0"),
        ("judge errors", ", ".join(f"{k}={v}" for k, v in m["judge_errors"].items()) or "0"),
        ("groups dropped", f"{m['groups_dropped']} of {m['groups']}"),
        ("output", str(args.output)),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    out.print(table)
    return 0


def _show_rows(output: Path, n: int) -> None:
    table = Table(title=f"first {n} scored lines")
    for col in ("key", "group", "valid", "correct", "answer", "rubric", "r_hat", "reward"):
        table.add_column(col)
    with open(output, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= n:
                break
            r = json.loads(line)
            table.add_row(
                str(r["key"]), str(r["group_id"]), "yes" if r["valid"] else r["invalid_reason"],
                "yes" if r["correct"] else ("ERR" if r["judge_error"] else "no"), (r["extracted_answer"] or "")[:28],
                f"{r['rubric_reward']:.2f}", f"{r['rubric_hat']:.2f}", f"{r['reward']:.3f}",
            )
    out.print(table)


def _cmd_serve(args: argparse.Namespace, cfg) -> int:
    import uvicorn

    from .scorer import RewardScorer
    from .server import create_app

    _print_config(cfg)
    app = create_app(RewardScorer(cfg), max_body_bytes=int(args.max_body_mb * (1 << 20)))
    console.print(f"reward server on http://{args.host}:{args.port}  (POST /evaluate, /evaluate_batch, /slime; GET /health, /metrics)")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _cmd_bench(args: argparse.Namespace, cfg) -> int:
    from .bench import bench_config, run_regime

    regimes = [r.strip() for r in args.regimes.split(",") if r.strip()]
    unknown = [r for r in regimes if r not in BENCH_REGIMES]
    if unknown or not regimes:
        console.print(f"[red]error:[/red] unknown regime {', '.join(unknown)}; choose from {', '.join(BENCH_REGIMES)}")
        return 2
    cfg = bench_config(cfg, args.rubric_source)
    _print_config(cfg)
    title = (
        f"rubric scoring, one core (single process, CPU time): {args.responses} x {args.kb:g} KB, "
        f"{args.entities} entities, rubric reads {cfg.rubric.source}, {cfg.rubric.normalization} normalisation"
    )
    table = Table(title=title)
    for col in ("regime", "rubric MB/s", "ratio vs regex pass", "regex pass MB/s", "LongTraceRL code MB/s",
                "same scores as LongTraceRL", "whole scorer MB/s", "rubric mean"):
        table.add_column(col)
    for regime in regimes:
        console.print(f"{regime}: generating {args.responses} responses and timing ...")
        r = run_regime(cfg, regime, args.responses, args.kb, args.entities, args.group_size, args.seed,
                       args.non_ascii, longtracerl=not args.no_longtracerl)
        original = r.mb_per_s(r.longtracerl_seconds)
        table.add_row(
            regime, f"{r.mb_per_s(r.rubric_seconds):.0f}", f"{r.ratio_to_regex:.1f}x",
            f"{r.mb_per_s(r.regex_seconds):.0f}",
            "-" if original is None else f"{original:.0f}",
            "-" if r.agree is None else f"{r.agree}/{r.responses}",
            f"{r.mb_per_s(r.scorer_seconds):.0f}", f"{r.rubric_mean:.3f}",
        )
    out.print(table)
    console.print(
        "MB/s: UTF-8 bytes the rubric reads per CPU second of this one process. rubric = the scorer's rubric step "
        "(RewardScorer._rubric); regex pass = one compiled alternation of the entity names over the same text "
        "(ratio > 1: the rubric is faster); whole scorer = score_group with the rule judge. Target: rubric >= 150 MB/s."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = reward_config_from_args(args)
    except (ValueError, OSError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    return {"score": _cmd_score, "serve": _cmd_serve, "bench": _cmd_bench}[args.command](args, cfg)


if __name__ == "__main__":
    sys.exit(main())
