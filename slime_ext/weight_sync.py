"""Weight sync trainer -> rollout engines: one interface, three transports, versions tracked.

    sync = WeightSync(engine_urls, WeightSyncConfig(transport="disk", disk_dir="/ckpt/sync"))
    version = await sync.sync(named_tensors)          # HF names -> tensors (an iterable or a dict)

Every sync: version += 1; ``/pause_generation`` (mode in_place: running requests keep their KV cache and resume
with the new weights) -> ``/flush_cache`` (retried until it succeeds: SGLang refuses while requests run) -> the
transport -> ``/continue_generation``. The new version travels as SGLang's ``weight_version`` (a string) and comes
back in every response's ``meta_info.weight_version``.

Transports (SGLang routes; the torch engine implements all three, gloo instead of NCCL on CPU):

  disk         the trainer writes HF safetensors to ``<disk_dir>/weight_v<N>/``; engines ``/update_weights_from_disk``
  distributed  ``/init_weights_update_group`` once (trainer = rank 0, engine ranks from ``rank_offset``), then per
               bucket ``/update_weights_from_distributed`` {names, dtypes, shapes} while rank 0 broadcasts each tensor
  tensor       colocated: per bucket one flattened tensor per dtype, pickled with torch's multiprocessing
               reductions (CUDA IPC handles on GPU, shared memory on CPU), ``/update_weights_from_tensor``
               {serialized_named_tensors, load_format: "flattened_bucket"}

Colocated sleep/wake: ``release_memory`` / ``resume_memory`` call ``/release_memory_occupation`` and
``/resume_memory_occupation`` with tags (``weights``, ``kv_cache``; SGLang also knows ``cuda_graph``).
"""
from __future__ import annotations

import asyncio
import base64
import datetime
import io
import logging
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import httpx

log = logging.getLogger("longtrace.weight_sync")

TRANSPORTS = ("disk", "distributed", "tensor")


class WeightSyncError(RuntimeError):
    """An engine refused or failed a weight-sync call; the message names the engine and the route."""


@dataclass
class WeightSyncConfig:
    transport: str = "disk"
    disk_dir: str | None = None  # disk: where weight_v<N>/ directories are written
    keep_last: int = 2  # disk: weight_v<N> directories kept (older ones are deleted after a sync)
    bucket_mb: float = 512.0  # distributed / tensor: bytes per bucket (slime's --update-weight-buffer-size)
    master_address: str = "127.0.0.1"  # distributed: address engines connect to (the trainer's)
    master_port: int = 0  # distributed: 0 picks a free port
    backend: str = "nccl"  # distributed: nccl on GPUs, gloo on CPU
    group_name: str = "longtrace_weight_update"
    engine_ranks: int = 1  # distributed / tensor: ranks (GPUs) per engine: SGLang's tp size
    pause_mode: str = "in_place"  # abort | retract | in_place (SGLang's pause modes)
    flush_timeout_s: float = 60.0
    timeout_s: float = 600.0
    initial_version: int = 0

    def validate(self) -> "WeightSyncConfig":
        if self.transport not in TRANSPORTS:
            raise ValueError(f"--update-weight-transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}")
        if self.transport == "disk" and not self.disk_dir:
            raise ValueError("--update-weight-disk-dir is required with --update-weight-transport disk")
        if self.bucket_mb <= 0:
            raise ValueError(f"--update-weight-buffer-size must be > 0, got {self.bucket_mb}")
        if self.backend not in ("nccl", "gloo"):
            raise ValueError(f"weight sync backend must be nccl or gloo, got {self.backend!r}")
        if self.pause_mode not in ("abort", "retract", "in_place"):
            raise ValueError(f"pause mode must be abort, retract or in_place, got {self.pause_mode!r}")
        if self.engine_ranks < 1:
            raise ValueError("engine_ranks must be >= 1")
        return self


# ---- buckets and tensor payloads ----------------------------------------------------------------------------------

def buckets(named: Iterable[tuple[str, Any]], bucket_bytes: int) -> Iterable[list[tuple[str, Any]]]:
    """Consecutive groups of tensors of at most ``bucket_bytes`` (a larger tensor is a bucket of its own)."""
    bucket, size = [], 0
    for name, t in named:
        n = t.numel() * t.element_size()
        if bucket and size + n > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, t))
        size += n
    if bucket:
        yield bucket


def flatten_bucket(named: Sequence[tuple[str, Any]]) -> Any:
    """One dtype's tensors as one flat tensor + metadata, laid out like SGLang's ``FlattenedTensorBucket``.

    With SGLang installed (GPU) SGLang's own class is used so its loader accepts the pickle; without it the same
    layout with dict metadata, which the torch engine reads."""
    import torch

    dtypes = {t.dtype for _, t in named}
    if len(dtypes) != 1:
        raise ValueError(f"a flattened bucket holds one dtype, got {sorted(map(str, dtypes))}")
    try:
        from sglang.srt.weight_sync.tensor_bucket import FlattenedTensorBucket  # type: ignore

        b = FlattenedTensorBucket(named_tensors=list(named))
        return {"flattened_tensor": b.get_flattened_tensor(), "metadata": b.get_metadata()}
    except ImportError:
        pass
    meta, start = [], 0
    for name, t in named:
        meta.append({"name": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
                     "start_idx": start, "end_idx": start + t.numel(), "numel": t.numel()})
        start += t.numel()
    flat = torch.cat([t.detach().reshape(-1) for _, t in named])
    return {"flattened_tensor": flat, "metadata": meta}


def unflatten_bucket(bucket: dict) -> dict:
    flat = bucket["flattened_tensor"]
    out = {}
    for m in bucket["metadata"]:
        m = m if isinstance(m, dict) else vars(m)
        out[m["name"]] = flat[m["start_idx"]:m["end_idx"]].view(*m["shape"])
    return out


def serialize_tensors(obj: Any) -> str:
    """base64 of a torch multiprocessing pickle: storages are shared (CUDA IPC handle, or a shared-memory file on
    CPU), not copied. The sender must keep the tensors alive until the engine has answered."""
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing as mp  # registers torch's tensor reductions with ForkingPickler

    if mp.get_sharing_strategy() != "file_system":
        # file_descriptor sharing needs a unix socket between the processes; over HTTP only named files work.
        mp.set_sharing_strategy("file_system")
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(obj)
    return base64.b64encode(buf.getvalue()).decode()


def broadcast_from_rank0(group: Any, tensor: Any) -> None:
    """``dist.broadcast`` on a process group object made outside torch.distributed's default group."""
    import torch.distributed as dist

    opts = dist.BroadcastOptions()
    opts.rootRank = 0
    group.broadcast([tensor], opts).wait()


def deserialize_tensors(payload: str) -> Any:
    import torch.multiprocessing  # noqa: F401  (registers the tensor reductions)

    return pickle.loads(base64.b64decode(payload))


# ---- engine control (thin HTTP wrappers) -------------------------------------------------------------------------

class EngineControl:
    """The control routes of one engine (SGLang or torch engine)."""

    def __init__(self, url: str, client: httpx.AsyncClient):
        self.url, self.client = url.rstrip("/"), client

    async def post(self, route: str, body: dict | None = None, ok_statuses=(200,)) -> httpx.Response:
        resp = await self.client.post(f"{self.url}{route}", json=body or {})
        if resp.status_code not in ok_statuses:
            raise WeightSyncError(f"{self.url}{route}: HTTP {resp.status_code}: {resp.text[:300]}")
        if resp.headers.get("content-type", "").startswith("application/json"):
            data = resp.json()
            if isinstance(data, dict) and data.get("success") is False:
                raise WeightSyncError(f"{self.url}{route}: {data.get('message')}")
        return resp

    async def pause(self, mode: str) -> None:
        await self.post("/pause_generation", {"mode": mode})

    async def resume_generation(self) -> None:
        await self.post("/continue_generation", {})

    async def flush_cache(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            resp = await self.client.post(f"{self.url}/flush_cache")
            if resp.status_code == 200:
                return
            if time.monotonic() > deadline:
                raise WeightSyncError(f"{self.url}/flush_cache kept failing for {timeout_s:g} s: {resp.text[:200]}")
            await asyncio.sleep(0.2)

    async def model_info(self) -> dict:
        resp = await self.client.get(f"{self.url}/get_model_info")
        resp.raise_for_status()
        return resp.json()


# ---- the interface ---------------------------------------------------------------------------------------------------

class WeightSync:
    """Pushes a new policy to every engine; ``version`` counts syncs (the engines' ``weight_version``)."""

    def __init__(self, engine_urls: Sequence[str] | Callable[[], Sequence[str]], cfg: WeightSyncConfig,
                 client: httpx.AsyncClient | None = None, template_dir: str | None = None):
        self.cfg = cfg.validate()
        self._urls = engine_urls if callable(engine_urls) else (lambda: list(engine_urls))
        self._client = client
        self.version = cfg.initial_version
        self.template_dir = template_dir  # disk: config/tokenizer files copied next to the weights
        self._group: Any = None
        self._group_urls: list[str] = []
        self.history: list[dict] = []  # one entry per sync: version, seconds, bytes, engines

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.cfg.timeout_s, trust_env=False)
        return self._client

    def engines(self) -> list[EngineControl]:
        return [EngineControl(u, self.client()) for u in self._urls()]

    async def sync(self, named_tensors: Iterable[tuple[str, Any]] | dict) -> int:
        named = list(named_tensors.items() if isinstance(named_tensors, dict) else named_tensors)
        engines = self.engines()
        if not engines:
            raise WeightSyncError("no engines to sync")
        version = self.version + 1
        start = time.perf_counter()
        await asyncio.gather(*(e.pause(self.cfg.pause_mode) for e in engines))
        try:
            await asyncio.gather(*(e.flush_cache(self.cfg.flush_timeout_s) for e in engines))
            if self.cfg.transport == "disk":
                path = await asyncio.to_thread(self.write_checkpoint, named, version)
                await self._load_from_disk(engines, path, version)
            elif self.cfg.transport == "distributed":
                await self._distributed(engines, named, version)
            else:
                await self._tensor(engines, named, version)
        finally:
            await asyncio.gather(*(e.resume_generation() for e in engines), return_exceptions=True)
        self.version = version
        nbytes = sum(t.numel() * t.element_size() for _, t in named)
        seconds = time.perf_counter() - start
        self.history.append({"version": version, "seconds": seconds, "bytes": nbytes, "engines": len(engines)})
        log.info("weight sync v%d via %s: %d tensors, %.1f MB to %d engine(s) in %.2f s", version, self.cfg.transport,
                 len(named), nbytes / 1e6, len(engines), seconds)
        return version

    async def sync_from_path(self, path: str) -> int:
        """Disk transport with a checkpoint the trainer already wrote (e.g. its HF export)."""
        engines = self.engines()
        version = self.version + 1
        await asyncio.gather(*(e.pause(self.cfg.pause_mode) for e in engines))
        try:
            await asyncio.gather(*(e.flush_cache(self.cfg.flush_timeout_s) for e in engines))
            await self._load_from_disk(engines, str(path), version)
        finally:
            await asyncio.gather(*(e.resume_generation() for e in engines), return_exceptions=True)
        self.version = version
        log.info("weight sync v%d from %s to %d engine(s)", version, path, len(engines))
        return version

    # -- disk
    def write_checkpoint(self, named: list[tuple[str, Any]], version: int) -> str:
        import shutil

        from safetensors.torch import save_file

        root = Path(self.cfg.disk_dir)
        out = root / f"weight_v{version}"
        tmp = root / f".weight_v{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({n: t.detach().contiguous().cpu() for n, t in named}, str(tmp / "model.safetensors"))
        if self.template_dir:
            for f in Path(self.template_dir).iterdir():
                if f.is_file() and not f.name.endswith((".safetensors", ".bin")) and f.name != "model.safetensors.index.json":
                    shutil.copy2(f, tmp / f.name)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)  # engines never see a half-written checkpoint
        old = sorted((p for p in root.glob("weight_v*") if p.name[8:].isdigit()), key=lambda p: int(p.name[8:]))
        for p in old[: max(0, len(old) - self.cfg.keep_last)]:
            shutil.rmtree(p, ignore_errors=True)
        return str(out)

    async def _load_from_disk(self, engines: list[EngineControl], path: str, version: int) -> None:
        body = {"model_path": path, "weight_version": str(version), "flush_cache": True}
        await asyncio.gather(*(e.post("/update_weights_from_disk", body) for e in engines))

    # -- distributed
    async def init_group(self, engines: list[EngineControl]) -> None:
        """Create the broadcast group: rank 0 here, engine i's ranks from 1 + i * engine_ranks."""
        import socket

        import torch.distributed as dist

        port = self.cfg.master_port
        if not port:
            with socket.socket() as s:
                s.bind((self.cfg.master_address, 0))
                port = s.getsockname()[1]
        world = 1 + len(engines) * self.cfg.engine_ranks
        store = dist.TCPStore(self.cfg.master_address, port, world, is_master=True, wait_for_workers=False,
                              timeout=datetime.timedelta(seconds=self.cfg.timeout_s))

        def make_group():
            if self.cfg.backend == "gloo":
                return dist.ProcessGroupGloo(store, 0, world, datetime.timedelta(seconds=self.cfg.timeout_s))
            return dist.ProcessGroupNCCL(store, 0, world)
        group_task = asyncio.create_task(asyncio.to_thread(make_group))
        joins = [
            e.post("/init_weights_update_group", {
                "master_address": self.cfg.master_address, "master_port": port, "rank_offset": 1 + i * self.cfg.engine_ranks,
                "world_size": world, "group_name": self.cfg.group_name, "backend": self.cfg.backend,
            }) for i, e in enumerate(engines)
        ]
        results = await asyncio.gather(*joins, return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            group_task.cancel()
            raise WeightSyncError(f"init_weights_update_group failed: {errors[0]}")
        self._group, self._store = await group_task, store
        self._group_urls = [e.url for e in engines]
        log.info("weight update group %s: world %d (%s) on %s:%d", self.cfg.group_name, world, self.cfg.backend,
                 self.cfg.master_address, port)

    async def _distributed(self, engines: list[EngineControl], named: list[tuple[str, Any]], version: int) -> None:
        if self._group is None or self._group_urls != [e.url for e in engines]:
            if self._group is not None:  # engines changed (restart): the old group is unusable
                await self.destroy_group()
            await self.init_group(engines)
        for bucket in buckets(named, int(self.cfg.bucket_mb * 2**20)):
            body = {
                "names": [n for n, _ in bucket], "dtypes": [str(t.dtype).replace("torch.", "") for _, t in bucket],
                "shapes": [list(t.shape) for _, t in bucket], "group_name": self.cfg.group_name,
                "weight_version": str(version), "flush_cache": False,
            }

            def broadcast(bucket=bucket):
                for _, t in bucket:
                    broadcast_from_rank0(self._group, t.detach().contiguous())
            sending = asyncio.create_task(asyncio.to_thread(broadcast))
            await asyncio.gather(*(e.post("/update_weights_from_distributed", body) for e in engines), sending)

    async def destroy_group(self) -> None:
        engines = [EngineControl(u, self.client()) for u in self._group_urls]
        await asyncio.gather(*(e.post("/destroy_weights_update_group", {"group_name": self.cfg.group_name})
                               for e in engines), return_exceptions=True)
        self._group, self._group_urls = None, []

    # -- tensor (colocated)
    async def _tensor(self, engines: list[EngineControl], named: list[tuple[str, Any]], version: int) -> None:
        for bucket in buckets(named, int(self.cfg.bucket_mb * 2**20)):
            by_dtype: dict[Any, list] = {}
            for name, t in bucket:
                by_dtype.setdefault(t.dtype, []).append((name, t.detach().contiguous()))
            for group in by_dtype.values():
                flat = flatten_bucket(group)
                payload = serialize_tensors(flat)
                body = {"serialized_named_tensors": [payload] * self.cfg.engine_ranks, "load_format": "flattened_bucket",
                        "flush_cache": False, "weight_version": str(version)}
                # `flat` stays referenced until every engine answered: SGLang copies from the shared storage.
                await asyncio.gather(*(e.post("/update_weights_from_tensor", body) for e in engines))
                del flat

    # -- colocated sleep / wake
    async def release_memory(self, tags: Sequence[str] = ("weights", "kv_cache")) -> None:
        engines = self.engines()
        await asyncio.gather(*(e.flush_cache(self.cfg.flush_timeout_s) for e in engines))
        await asyncio.gather(*(e.post("/release_memory_occupation", {"tags": list(tags)}) for e in engines))
        log.info("released %s on %d engine(s)", ",".join(tags), len(engines))

    async def resume_memory(self, tags: Sequence[str] = ("weights", "kv_cache")) -> None:
        engines = self.engines()
        await asyncio.gather(*(e.post("/resume_memory_occupation", {"tags": list(tags)}) for e in engines))
        log.info("resumed %s on %d engine(s)", ",".join(tags), len(engines))

    async def engine_versions(self) -> dict[str, str]:
        infos = await asyncio.gather(*(e.model_info() for e in self.engines()))
        return {e.url: str(i.get("weight_version")) for e, i in zip(self.engines(), infos)}

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
