"""``longtrace data build CONFIG``: every data stage, end to end, from one config file (YAML or JSON).

Stages, each the ``longtrace data`` command of the same name writing into ``workdir``:

    synth-world (or the KILT file given as ``kilt``) -> ingest -> index -> walk -> questions -> agent
    -> import (optional, other agents' logs) -> tiers -> assemble -> export (stats.json + dataset card)

Every stage resumes (append-only outputs keyed by id, ingestion by byte offset; the world file and the index are
kept when present; export replaces its folder atomically), so rerunning an interrupted build finishes it without
redoing or duplicating work. ``--no-resume`` deletes the workdir first.

The config (``DEFAULTS`` shows every key; a key not listed there is an error)::

    {"workdir": "runs/build",
     "kilt": null,                                  # a KILT JSONL to ingest instead of a synthetic world
     "world": {"pages": 3000, "seed": 0},
     "index": {"title_weight": 3, "max_chars": 4000},
     "walks": {"seeds": 60, "walks_per_seed": 4, "seed": 0, "chooser": "heuristic"},
     "questions": {"mode": "template", "limit": null},
     "agent": {"enabled": true, "agent": "scripted", "format": "carr", "samples": 5, "workers": 8},
     "llm": {"base_url": "", "model": ""},          # for walks.chooser / questions.mode / agent.agent = llm
     "imports": [{"input": ["carr_dump.json"], "format": "auto", "agent": null}],
     "tiers": {"all_trajectories": false, "infer_citations": true},
     "assembly": {"tokenizer": "qwen", "budget": 32768, "strategies": ["traj-tiered"], "fill": "search",
                  "seed": 0, "limit": null, "dataset_name": "longqa", "source": "longqa"},
     "export": {"eval_fraction": 0.1, "name": "LongTrace-RL synthetic long-context QA", "parquet": true}}

Relative paths in ``kilt`` and ``imports`` are relative to the config file.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

DEFAULTS = {
    "workdir": "runs/build",
    "kilt": None,
    "world": {"pages": 3000, "seed": 0},
    "index": {"title_weight": 3, "max_chars": 4000},
    "walks": {"seeds": 60, "walks_per_seed": 4, "seed": 0, "chooser": "heuristic"},
    "questions": {"mode": "template", "limit": None},
    "agent": {"enabled": True, "agent": "scripted", "format": "carr", "samples": 5, "workers": 8},
    "llm": {"base_url": "", "model": ""},
    "imports": [],
    "tiers": {"all_trajectories": False, "infer_citations": True},
    "assembly": {"tokenizer": "qwen", "budget": 32768, "strategies": ["traj-tiered"], "fill": "search", "seed": 0,
                 "limit": None, "dataset_name": "longqa", "source": "longqa"},
    "export": {"eval_fraction": 0.1, "name": "LongTrace-RL synthetic long-context QA", "parquet": True},
}


def load_config(path: str | Path) -> dict:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text) or {}
    else:
        raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a build config must be a mapping")
    cfg = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        if key not in DEFAULTS:
            raise ValueError(f"{path}: unknown key {key!r}; the keys are {', '.join(DEFAULTS)}")
        if isinstance(DEFAULTS[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"{path}: {key} must be a mapping")
            unknown = set(value) - set(DEFAULTS[key])
            if unknown:
                raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} in {key}; "
                                 f"the keys are {', '.join(DEFAULTS[key])}")
            cfg[key].update(value)
        else:
            cfg[key] = value
    base = path.resolve().parent
    if cfg["kilt"]:
        cfg["kilt"] = str((base / cfg["kilt"]).resolve())
    for imp in cfg["imports"]:
        if not isinstance(imp, dict) or "input" not in imp:
            raise ValueError(f"{path}: each import needs 'input' (a file or a list of files)")
        files = imp["input"] if isinstance(imp["input"], list) else [imp["input"]]
        imp["input"] = [str((base / f).resolve()) for f in files]
    if not isinstance(cfg["assembly"]["strategies"], list) or not cfg["assembly"]["strategies"]:
        raise ValueError(f"{path}: assembly.strategies must be a non-empty list")
    return cfg


def _llm_flags(cfg: dict) -> list[str]:
    llm = cfg["llm"]
    return ["--llm-base-url", str(llm["base_url"]), "--llm-model", str(llm["model"])] if llm.get("base_url") else []


def stages(cfg: dict) -> list[list[str]]:
    w = Path(cfg["workdir"])
    s = lambda p: str(w / p)  # noqa: E731
    steps = []
    if not cfg["kilt"]:
        steps.append(["synth-world", "--pages", str(cfg["world"]["pages"]), "--seed", str(cfg["world"]["seed"]),
                      "--output", s("world.jsonl")])
    steps.append(["ingest", "--input", cfg["kilt"] or s("world.jsonl"), "--store", s("world.db")])
    steps.append(["index", "--store", s("world.db"), "--index", s("index"), "--title-weight",
                  str(cfg["index"]["title_weight"]), "--max-chars", str(cfg["index"]["max_chars"])])
    wk = cfg["walks"]
    steps.append(["walk", "--store", s("world.db"), "--output", s("walks.jsonl"), "--seeds", str(wk["seeds"]),
                  "--walks-per-seed", str(wk["walks_per_seed"]), "--seed", str(wk["seed"]), "--chooser", wk["chooser"]]
                 + (_llm_flags(cfg) if wk["chooser"] == "llm" else []))
    q = cfg["questions"]
    steps.append(["questions", "--store", s("world.db"), "--walks", s("walks.jsonl"), "--output", s("questions.jsonl"),
                  "--mode", q["mode"]] + (["--limit", str(q["limit"])] if q["limit"] else [])
                 + (_llm_flags(cfg) if q["mode"] == "llm" else []))
    trajectories = []
    a = cfg["agent"]
    if a["enabled"]:
        steps.append(["agent", "--questions", s("questions.jsonl"), "--output", s("trajectories.jsonl"), "--store",
                      s("world.db"), "--index", s("index"), "--agent", a["agent"], "--format", a["format"],
                      "--samples", str(a["samples"]), "--workers", str(a["workers"])]
                     + (_llm_flags(cfg) if a["agent"] == "llm" else []))
        trajectories.append(s("trajectories.jsonl"))
    for i, imp in enumerate(cfg["imports"]):
        out = s(f"imported_{i}.jsonl")
        steps.append(["import", "--input", *imp["input"], "--output", out, "--format", imp.get("format", "auto"),
                      "--questions", s("questions.jsonl")] + (["--agent", imp["agent"]] if imp.get("agent") else []))
        trajectories.append(out)
    t = cfg["tiers"]
    steps.append(["tiers", "--store", s("world.db"), "--questions", s("questions.jsonl"), "--trajectories",
                  *trajectories, "--output", s("tiers.jsonl")]
                 + (["--all-trajectories"] if t["all_trajectories"] else [])
                 + ([] if t["infer_citations"] else ["--no-infer-citations"]))
    asm = cfg["assembly"]
    steps.append(["assemble", "--store", s("world.db"), "--tiers", s("tiers.jsonl"), "--output", s("samples.jsonl"),
                  "--index", s("index"), "--tokenizer", asm["tokenizer"], "--budget", str(asm["budget"]),
                  "--strategy", *asm["strategies"], "--fill", asm["fill"], "--seed", str(asm["seed"]),
                  "--dataset-name", asm["dataset_name"], "--source", asm["source"]]
                 + (["--limit", str(asm["limit"])] if asm["limit"] else []))
    e = cfg["export"]
    steps.append(["export", "--samples", s("samples.jsonl"), "--output", s("dataset"), "--eval-fraction",
                  str(e["eval_fraction"]), "--name", e["name"]] + ([] if e["parquet"] else ["--no-parquet"]))
    return steps


def run_build(args, main, console) -> int:
    cfg = load_config(args.config)
    if args.workdir:
        cfg["workdir"] = str(args.workdir)
    if args.tokenizer:
        cfg["assembly"]["tokenizer"] = args.tokenizer
    w = Path(cfg["workdir"])
    if args.no_resume and w.exists():
        shutil.rmtree(w)
    w.mkdir(parents=True, exist_ok=True)
    (w / "build_config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    console.print(f"[bold]build[/bold] {args.config} -> {w}\n" + json.dumps(cfg, indent=1))
    rc = run_stages(stages(cfg), w, main, console)
    if rc:
        return rc
    console.print(f"[bold green]dataset ready:[/bold green] {w / 'dataset'}")
    return 0


def run_stages(steps: list[list[str]], workdir: Path, main, console) -> int:
    """Run ``longtrace data`` stages (argv lists) in order; the first non-zero exit stops the run and is returned.
    The world and the index are skipped when they exist (the other stages resume on their own)."""
    for step in steps:
        made = {"synth-world": workdir / "world.jsonl", "index": workdir / "index"}.get(step[0])
        if made is not None and made.exists():
            console.print(f"[dim]{made} exists; skipping {step[0]}[/dim]")
            continue
        console.rule(f"longtrace data {step[0]}")
        rc = main(step)
        if rc:
            console.print(f"[red]stopped:[/red] stage {step[0]} exited with {rc}")
            return rc
    return 0
