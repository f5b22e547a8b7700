"""Weight sync trainer -> rollout engines: one interface, three transports, versions tracked.

    sync = WeightSync(engine_urls, WeightSyncConfig(transport="disk", disk_dir="/ckpt/sync"))
    version = await sync.sync(named_tensors)          # HF names -> tensors (an iterable or a dict)

Every sync, against SGLang 0.5.23's protocol (``managers/scheduler_components/weight_updater.py``):

    /pause_generation {"mode": "retract"}   running requests go back to the queue (their KV is recomputed with the new
                                            weights); ``in_place`` would keep them running and make every flush fail
    /flush_cache                            retried until it answers 200 (the engine is idle)
    disk:        /update_weights_from_disk {"model_path", "weight_version", "flush_cache": false}
    distributed: /begin_weight_update, per bucket /update_weights_from_distributed while rank 0 broadcasts, /end_weight_update
    tensor:      /begin_weight_update, per bucket /update_weights_from_tensor, /end_weight_update
    /continue_generation                    (skipped with ``keep_paused``: the colocated loop resumes the KV cache first)

SGLang refuses ``update_weights_from_distributed`` / ``_from_tensor`` outside a ``begin/end_weight_update`` session;
the session is always closed, also when a bucket fails. The version travels as SGLang's ``weight_version`` (a
string) and comes back in every response's ``meta_info.weight_version``.

Transports:
  disk         the trainer writes HF safetensors to ``<disk_dir>/weight_v<N>/``
  distributed  a process group with the engines' ranks (trainer = rank 0, engine i's TP ranks from ``1 + i * tp``),
               built like SGLang builds its side (``init_weight_update_group``); one broadcast per bucket of one dtype
               (``load_format: flattened_bucket``). gloo on CPU, NCCL on GPUs.
  tensor       colocated: per bucket one flattened tensor per dtype, shared, not copied: a CUDA IPC handle on GPU, a
               shared-memory file on CPU. SGLang wants one payload per engine TP rank, each made by the trainer rank
               on that rank's GPU (train_actor.py gathers them); one process with ``engine_ranks == 1`` may sync alone.

Colocated sleep/wake (``release_memory`` / ``resume_memory``): pause, flush until idle (SGLang *asserts* idleness and
the scheduler dies otherwise), then ``/release_memory_occupation {"tags"}``; engines stay paused until
``resume_memory(..., resume_generation=True)``.
"""
from __future__ import annotations

import asyncio
import base64
import datetime
import io
import logging
import pickle
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Awaitable, Callable, Iterable, Sequence

import httpx

log = logging.getLogger("longtrace.weight_sync")

TRANSPORTS = ("disk", "distributed", "tensor")
PAUSE_MODES = ("retract", "abort", "in_place")
MEMORY_TAGS = ("weights", "kv_cache", "cuda_graph")  # SGLang's GPU_MEMORY_ALL_TYPES


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
    pause_mode: str = "retract"  # SGLang's pause modes; in_place makes /flush_cache fail while requests run
    flush_timeout_s: float = 60.0
    timeout_s: float = 600.0  # any HTTP call, and the weight-update group's collectives
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
        if self.pause_mode not in PAUSE_MODES:
            raise ValueError(f"pause mode must be one of {', '.join(PAUSE_MODES)}, got {self.pause_mode!r}")
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


def by_dtype(bucket: Sequence[tuple[str, Any]]) -> list[list[tuple[str, Any]]]:
    """A bucket split into one list per dtype (a flattened bucket holds one dtype), in first-seen order."""
    groups: dict[Any, list] = {}
    for name, t in bucket:
        groups.setdefault(t.dtype, []).append((name, t.detach().contiguous()))
    return list(groups.values())


def flatten_bucket(named: Sequence[tuple[str, Any]]) -> dict:
    """One dtype's tensors as SGLang's flattened bucket: ``{"flattened_tensor": uint8 bytes, "metadata": [...]}``.

    The layout is SGLang's ``FlattenedTensorBucket`` (``weight_sync/tensor_bucket.py``): each tensor's bytes
    (``flatten().view(uint8)``) back to back, offsets in bytes. SGLang reads the metadata by attribute
    (``meta.name``, ``meta.start_idx`` ...); ``types.SimpleNamespace`` is on its unpickler's allow-list, so the trainer
    does not need SGLang installed to produce an accepted payload."""
    import torch

    dtypes = {t.dtype for _, t in named}
    if len(dtypes) != 1:
        raise ValueError(f"a flattened bucket holds one dtype, got {sorted(map(str, dtypes))}")
    parts, meta, offset = [], [], 0
    for name, t in named:
        raw = t.detach().contiguous().reshape(-1).view(torch.uint8)
        parts.append(raw)
        meta.append(SimpleNamespace(name=name, shape=t.shape, dtype=t.dtype, start_idx=offset,
                                    end_idx=offset + raw.numel(), numel=raw.numel()))
        offset += raw.numel()
    return {"flattened_tensor": torch.cat(parts), "metadata": meta}


def unflatten_bucket(bucket: dict) -> dict:
    """The inverse of ``flatten_bucket`` (what SGLang's ``reconstruct_tensors`` does): name -> tensor view."""
    flat = bucket["flattened_tensor"]
    return {m.name: flat[m.start_idx:m.end_idx].view(m.dtype).reshape(m.shape) for m in bucket["metadata"]}


def serialize_tensors(obj: Any) -> str:
    """base64 of a torch multiprocessing pickle, as SGLang's ``MultiprocessingSerializer`` reads it: storages are
    shared, not copied. The sender must keep the tensors alive until the engine has answered.

    CUDA tensors travel as CUDA IPC handles, with the device named by its UUID (SGLang's
    ``monkey_patch_torch_reductions``, so that processes that number their GPUs differently agree); that needs SGLang
    importable in the trainer's environment, as in the GPU image. CPU tensors travel as named shared-memory files
    (sharing strategy ``file_system``): the default ``file_descriptor`` strategy passes a descriptor through the
    sender's ``resource_sharer``, which a process not forked from the sender cannot authenticate with (SGLang fails
    with ``AuthenticationError: digest sent was rejected`` and dies)."""
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing as mp  # registers torch's tensor reductions with ForkingPickler

    if _holds_cuda_tensor(obj):
        try:
            from sglang.srt.utils.patch_torch import monkey_patch_torch_reductions  # type: ignore
        except ImportError as e:
            raise WeightSyncError("the tensor transport on GPUs needs SGLang importable in the trainer's environment "
                                  f"(its CUDA IPC device mapping): {e}; use --update-weight-transport distributed") from e
        monkey_patch_torch_reductions()
    elif mp.get_sharing_strategy() != "file_system":
        mp.set_sharing_strategy("file_system")
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(obj)
    return base64.b64encode(buf.getvalue()).decode()


def _holds_cuda_tensor(obj: Any) -> bool:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.is_cuda
    if isinstance(obj, dict):
        return any(_holds_cuda_tensor(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_holds_cuda_tensor(v) for v in obj)
    return False


def deserialize_tensors(payload: str) -> Any:
    import torch.multiprocessing  # noqa: F401 (registers the tensor reductions)

    return pickle.loads(base64.b64decode(payload))


def checkpoint_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of an HF safetensors checkpoint, from the file headers (no tensor is read)."""
    from safetensors import safe_open

    out: dict[str, tuple[int, ...]] = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            for name in h.keys():
                out[name] = tuple(h.get_slice(name).get_shape())
    return out


def check_tensors(expected: dict[str, tuple[int, ...]], named: Iterable[tuple[str, Sequence[int]]], source: str) -> None:
    """Refuse, before any engine sees them, tensors SGLang would mishandle: a name its model does not have is
    silently ignored (measured: ``success: true``, nothing loaded) and a wrong shape kills its scheduler (an
    assertion in the weight loader takes the whole server down). ``expected`` is the checkpoint the engines started
    from; a tied ``lm_head.weight`` is allowed (SGLang skips it)."""
    unknown, misshaped = [], []
    for name, shape in named:
        want = expected.get(name)
        if want is None:
            embed = expected.get("model.embed_tokens.weight")
            if not (name == "lm_head.weight" and embed is not None and tuple(shape) == embed):
                unknown.append(name)
        elif tuple(shape) != want:
            misshaped.append(f"{name} {tuple(shape)} (the engines' checkpoint has {want})")
    problems = ([f"{len(unknown)} tensor(s) the engines' model does not have, which SGLang would silently ignore: "
                 f"{', '.join(unknown[:5])}"] if unknown else []) + \
               ([f"{len(misshaped)} tensor(s) of another shape, on which SGLang's loader asserts and the engine dies: "
                 f"{'; '.join(misshaped[:5])}"] if misshaped else [])
    if problems:
        raise WeightSyncError(f"weights from {source} do not fit the engines' model; nothing was sent: "
                              + " / ".join(problems))


# ---- the weight-update process group ----------------------------------------------------------------------------

def init_weight_update_group(backend: str, master_address: str, master_port: int, world_size: int, rank: int,
                             group_name: str, timeout_s: float):
    """Join (rank 0: host) the group SGLang's ranks build in ``init_custom_process_group``: a TCP store at
    ``master_address:master_port``, every key under ``PrefixStore(group_name)``, and torch's own process-group
    helper, which adds ``"<group_name>/"`` and a device prefix. A group built on the bare store (as this project did
    before) never meets SGLang's ranks. Blocks until every rank has joined: call it in a thread."""
    import torch.distributed as dist
    from torch.distributed.distributed_c10d import Backend, PrefixStore, _new_process_group_helper, _world

    timeout = datetime.timedelta(seconds=timeout_s)
    store = dist.TCPStore(master_address, master_port, world_size, is_master=rank == 0, timeout=timeout,
                          wait_for_workers=False)
    group, _ = _new_process_group_helper(world_size, rank, [], Backend(backend), PrefixStore(group_name, store),
                                         group_name=group_name, timeout=timeout)
    _world.pg_group_ranks[group] = {i: i for i in range(world_size)}
    return group


class Broadcast:
    """Rank 0's broadcasts of one bucket, in a daemon thread. A gloo broadcast cannot be cancelled: it ends when every
    rank has received, when a rank leaves the group (``/destroy_weights_update_group`` on the engine) or at the
    group's timeout. ``abort`` tears the group down (NCCL) and waits a bounded time for the thread."""

    def __init__(self, group: Any, tensors: list[Any]):
        self.group, self.error, self.done = group, None, threading.Event()
        self.thread = threading.Thread(target=self._run, args=(tensors,), name="weight-broadcast", daemon=True)
        self.thread.start()

    def _run(self, tensors: list[Any]) -> None:
        import torch
        import torch.distributed as dist

        try:
            if tensors and tensors[0].is_cuda:  # a new thread's current device is cuda:0, whatever the trainer's is
                torch.cuda.set_device(tensors[0].device)
            for t in tensors:
                dist.broadcast(t, src=0, group=self.group)
        except Exception as e:  # noqa: BLE001 (reported by wait())
            self.error = e
        finally:
            self.done.set()

    async def wait(self) -> None:
        while not self.done.is_set():
            await asyncio.sleep(0.005)
        if self.error is not None:
            raise WeightSyncError(f"weight broadcast failed: {self.error}")

    def abort(self, wait_s: float = 30.0) -> bool:
        """True when the thread ended within ``wait_s`` after the group was aborted."""
        import torch.distributed as dist

        try:
            if dist.get_backend(self.group) == "nccl":
                dist.distributed_c10d._abort_process_group(self.group)
        except Exception as e:  # noqa: BLE001
            log.warning("aborting the weight-update group: %s", e)
        return self.done.wait(wait_s)


# ---- engine control (thin HTTP wrappers) -------------------------------------------------------------------------

def engine_message(resp: httpx.Response) -> str:
    """The engine's own words for a refusal: SGLang answers ``{"success": false, "message"}`` or an OpenAI-style
    ``{"object": "error", "message"}``; FastAPI ``{"detail"}``; else the body text."""
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:500]
    if isinstance(data, dict):
        err = data.get("error")
        msg = data.get("message") or data.get("detail") or (err.get("message") if isinstance(err, dict) else err)
        if msg:
            return str(msg)[:500]
    return resp.text.strip()[:500]


class EngineControl:
    """The control routes of one engine (SGLang or the torch engine)."""

    def __init__(self, url: str, client: httpx.AsyncClient):
        self.url, self.client = url.rstrip("/"), client

    async def post(self, route: str, body: dict | None = None) -> httpx.Response:
        try:
            resp = await self.client.post(f"{self.url}{route}", json=body or {})
        except httpx.HTTPError as e:
            raise WeightSyncError(f"{self.url}{route}: {type(e).__name__}: {e}") from e
        if resp.status_code != 200:
            raise WeightSyncError(f"{self.url}{route}: HTTP {resp.status_code}: {engine_message(resp)}")
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
        """SGLang refuses (400) while requests run; a paused engine in ``retract``/``abort`` mode gets idle at once."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                resp = await self.client.post(f"{self.url}/flush_cache")
            except httpx.HTTPError as e:
                raise WeightSyncError(f"{self.url}/flush_cache: {type(e).__name__}: {e}") from e
            if resp.status_code == 200:
                return
            if time.monotonic() > deadline:
                raise WeightSyncError(f"{self.url}/flush_cache kept failing for {timeout_s:g} s: {engine_message(resp)}")
            await asyncio.sleep(0.2)

    async def begin_update(self) -> None:
        await self.post("/begin_weight_update", {})

    async def end_update(self) -> None:
        await self.post("/end_weight_update", {})

    async def release_memory(self, tags: Sequence[str]) -> None:
        await self.post("/release_memory_occupation", {"tags": list(tags)})

    async def resume_memory(self, tags: Sequence[str]) -> None:
        await self.post("/resume_memory_occupation", {"tags": list(tags)})

    async def model_info(self) -> dict:
        resp = await self.client.get(f"{self.url}/model_info")
        resp.raise_for_status()
        return resp.json()


async def gather_all(calls: Iterable[Awaitable]) -> list:
    """Run every call to the end; raise the first failure (after all finished, so none is left half-done)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


# ---- the interface ---------------------------------------------------------------------------------------------------

class WeightSync:
    """Pushes a new policy to every engine; ``version`` counts syncs (the engines' ``weight_version``)."""

    def __init__(self, engine_urls: Sequence[str] | Callable[[], Sequence[str]], cfg: WeightSyncConfig,
                 client: httpx.AsyncClient | None = None, template_dir: str | None = None):
        self.cfg = cfg.validate()
        self._urls = engine_urls if callable(engine_urls) else (lambda: list(engine_urls))
        self._client = client
        self.version = cfg.initial_version
        self.template_dir = template_dir  # the engines' checkpoint: names and shapes to check, config files to copy
        self._expected: dict[str, tuple[int, ...]] | None = None
        self._group: Any = None
        self._group_urls: list[str] = []
        self.history: list[dict] = []  # one entry per sync: version, seconds, bytes, engines

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.cfg.timeout_s, trust_env=False)
        return self._client

    def engines(self) -> list[EngineControl]:
        return [EngineControl(u, self.client()) for u in self._urls()]

    def check(self, named: Iterable[tuple[str, Sequence[int]]], source: str) -> None:
        """``check_tensors`` against ``template_dir`` (the checkpoint the engines started from); no-op without it."""
        if self.template_dir is None:
            return
        if self._expected is None:
            self._expected = checkpoint_shapes(self.template_dir)
        check_tensors(self._expected, named, source)

    async def sync(self, named_tensors: Iterable[tuple[str, Any]] | dict, keep_paused: bool = False) -> int:
        """Every engine gets ``named_tensors``; returns the new version. On failure the version is unchanged, the
        engines' update sessions are closed and generation continues (unless ``keep_paused``)."""
        named = list(named_tensors.items() if isinstance(named_tensors, dict) else named_tensors)
        self.check(((n, t.shape) for n, t in named), "the trainer")
        transport = self.cfg.transport
        if transport == "tensor" and self.cfg.engine_ranks > 1:
            raise WeightSyncError("the tensor transport needs one payload per engine TP rank, each made on that rank's "
                                  "GPU: sync from the trainer ranks (train_actor.py), not from one process")

        async def send(engines, version):
            if transport == "disk":
                path = await asyncio.to_thread(self.write_checkpoint, named, version)
                await self._load_from_disk(engines, path, version)
                prune_weight_dirs(Path(self.cfg.disk_dir), self.cfg.keep_last, version)
            elif transport == "distributed":
                await self._in_session(engines, self._distributed(engines, named, version))
            else:
                await self._in_session(engines, self._tensor(engines, named, version))
        return await self._sync(send, sum(t.numel() * t.element_size() for _, t in named), len(named), keep_paused)

    async def sync_from_path(self, path: str, keep_paused: bool = False) -> int:
        """Disk transport with a checkpoint the trainer already wrote (its HF export)."""
        shapes = checkpoint_shapes(path)
        self.check(shapes.items(), str(path))

        async def send(engines, version):
            await self._load_from_disk(engines, str(path), version)
        nbytes = sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))
        return await self._sync(send, nbytes, len(shapes), keep_paused)

    async def _sync(self, send, nbytes: int, ntensors: int, keep_paused: bool) -> int:
        engines = self.engines()
        if not engines:
            raise WeightSyncError("no engines to sync")
        version = self.version + 1
        start = time.perf_counter()
        await self.open(engines)
        try:
            await send(engines, version)
        finally:
            if not keep_paused:
                await gather_all(e.resume_generation() for e in engines)
        self.version = version
        seconds = time.perf_counter() - start
        self.history.append({"version": version, "seconds": seconds, "bytes": nbytes, "engines": len(engines)})
        log.info("weight sync v%d via %s: %d tensors, %.1f MB to %d engine(s) in %.2f s", version, self.cfg.transport,
                 ntensors, nbytes / 1e6, len(engines), seconds)
        return version

    async def open(self, engines: list[EngineControl]) -> None:
        """Pause (``pause_mode``) and flush every engine; on failure the paused ones continue."""
        try:
            await gather_all(e.pause(self.cfg.pause_mode) for e in engines)
            await gather_all(e.flush_cache(self.cfg.flush_timeout_s) for e in engines)
        except BaseException:
            await asyncio.gather(*(e.resume_generation() for e in engines), return_exceptions=True)
            raise

    async def _in_session(self, engines: list[EngineControl], work: Awaitable) -> None:
        """``work`` inside a weight-update session on every engine; sessions are always closed."""
        begun: list[EngineControl] = []

        async def begin(e):
            await e.begin_update()
            begun.append(e)
        try:
            await gather_all(begin(e) for e in engines)
            await work
        except BaseException:
            if asyncio.iscoroutine(work):
                work.close()
            await asyncio.gather(*(e.end_update() for e in begun), return_exceptions=True)
            raise
        await gather_all(e.end_update() for e in begun)

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
        return str(out)

    async def _load_from_disk(self, engines: list[EngineControl], path: str, version: int) -> None:
        # the cache was flushed while paused; a second flush here would fail with retracted requests waiting
        body = {"model_path": path, "weight_version": str(version), "flush_cache": False}
        await gather_all(e.post("/update_weights_from_disk", body) for e in engines)

    # -- distributed
    async def init_group(self, engines: list[EngineControl]) -> None:
        """Create the broadcast group: rank 0 here, engine i's ranks from 1 + i * engine_ranks."""
        import socket

        port = self.cfg.master_port
        if not port:
            with socket.socket() as s:
                s.bind((self.cfg.master_address, 0))
                port = s.getsockname()[1]
        world = 1 + len(engines) * self.cfg.engine_ranks
        holder: dict = {}

        def join():
            try:
                holder["group"] = init_weight_update_group(self.cfg.backend, self.cfg.master_address, port, world, 0,
                                                           self.cfg.group_name, self.cfg.timeout_s)
            except Exception as e:  # noqa: BLE001
                holder["error"] = e
        joining = threading.Thread(target=join, name="weight-group-join", daemon=True)
        joining.start()
        body = {"master_address": self.cfg.master_address, "master_port": port, "world_size": world,
                "group_name": self.cfg.group_name, "backend": self.cfg.backend}
        results = await asyncio.gather(*(e.post("/init_weights_update_group", {**body, "rank_offset": 1 + i * self.cfg.engine_ranks})
                                         for i, e in enumerate(engines)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:  # the joining thread stays blocked until the store timeout; it is a daemon and owns nothing
            ok = [e for e, r in zip(engines, results) if not isinstance(r, BaseException)]
            await self._destroy_on(ok)
            raise WeightSyncError(f"init_weights_update_group failed: {errors[0]}")
        await asyncio.to_thread(joining.join, self.cfg.timeout_s)
        if "group" not in holder:
            raise WeightSyncError(f"weight-update group {self.cfg.group_name}: {holder.get('error', 'join timed out')}")
        self._group = holder["group"]
        self._group_urls = [e.url for e in engines]
        log.info("weight update group %s: world %d (%s) on %s:%d", self.cfg.group_name, world, self.cfg.backend,
                 self.cfg.master_address, port)

    async def _distributed(self, engines: list[EngineControl], named: list[tuple[str, Any]], version: int) -> None:
        if self._group is None or self._group_urls != [e.url for e in engines]:
            if self._group is not None:  # engines changed: the old group is unusable
                await self.destroy_group()
            await self.init_group(engines)
        for bucket in buckets(named, int(self.cfg.bucket_mb * 2**20)):
            for group in by_dtype(bucket):
                flat = flatten_bucket(group)["flattened_tensor"]
                body = {"names": [n for n, _ in group], "dtypes": [str(t.dtype).replace("torch.", "") for _, t in group],
                        "shapes": [list(t.shape) for _, t in group], "group_name": self.cfg.group_name,
                        "load_format": "flattened_bucket", "weight_version": str(version), "flush_cache": False}
                await self._broadcast_bucket(engines, body, [flat])

    async def _broadcast_bucket(self, engines: list[EngineControl], body: dict, tensors: list[Any]) -> None:
        """Post the bucket to every engine while rank 0 broadcasts it. An engine that refuses never receives, which
        would leave the broadcast (and the trainer) blocked; a broadcast that fails here leaves the engines waiting
        for it. Either way the group is torn down on the engines (which ends both sides' waits), and the error names
        the engine or the broadcast."""
        sending = Broadcast(self._group, tensors)
        posts = asyncio.ensure_future(asyncio.gather(
            *(e.post("/update_weights_from_distributed", body) for e in engines), return_exceptions=True))
        sent = asyncio.ensure_future(sending.wait())
        done, _ = await asyncio.wait({posts, sent}, return_when=asyncio.FIRST_COMPLETED)
        if not (sent in done and sent.exception() is not None):
            if not any(isinstance(r, BaseException) for r in await posts):
                await sent
                return
        group, self._group = self._group, None
        await self._destroy_on(engines)
        if not posts.done():  # the engines' receives end with their group
            await asyncio.wait({posts}, timeout=60)
        # the engines' own words first (a refused post names its engine), then the broadcast's
        errors = [r for r in posts.result() if isinstance(r, BaseException)] if posts.done() else []
        if sent.done():
            if sent.exception() is not None:
                errors.append(sent.exception())
        else:
            sent.cancel()
        if not sending.abort(wait_s=30.0):
            log.error("the weight broadcast thread is still blocked after the group was torn down; it ends at the "
                      "group timeout (%g s)", self.cfg.timeout_s)
        self._destroy_local(group)
        raise WeightSyncError(f"update_weights_from_distributed failed: {'; '.join(map(str, errors))} (the weight-update "
                              "group was torn down; the next sync builds a new one)")

    async def _destroy_on(self, engines: list[EngineControl]) -> None:
        await asyncio.gather(*(e.post("/destroy_weights_update_group", {"group_name": self.cfg.group_name})
                               for e in engines), return_exceptions=True)
        self._group_urls = []

    @staticmethod
    def _destroy_local(group: Any) -> None:
        import torch.distributed as dist

        try:
            dist.destroy_process_group(group)
        except Exception as e:  # noqa: BLE001 (a broken group may refuse; it is dropped either way)
            log.debug("destroying the local weight-update group: %s", e)

    async def destroy_group(self) -> None:
        if self._group is None:
            return
        group, self._group = self._group, None
        await self._destroy_on([EngineControl(u, self.client()) for u in self._group_urls])
        self._destroy_local(group)

    # -- tensor (colocated, one producer)
    async def _tensor(self, engines: list[EngineControl], named: list[tuple[str, Any]], version: int) -> None:
        for bucket in buckets(named, int(self.cfg.bucket_mb * 2**20)):
            for group in by_dtype(bucket):
                flat = flatten_bucket(group)
                # `flat` stays referenced until every engine answered: SGLang copies from the shared storage
                await gather_all(post_tensor_bucket(e, [serialize_tensors(flat)], version) for e in engines)
                del flat

    # -- colocated sleep / wake
    async def release_memory(self, tags: Sequence[str] = MEMORY_TAGS) -> None:
        await release_memory(self.engines(), tags, self.cfg.flush_timeout_s)

    async def resume_memory(self, tags: Sequence[str] = MEMORY_TAGS, resume_generation: bool = True) -> None:
        await resume_memory(self.engines(), tags, resume_generation)

    async def engine_versions(self) -> dict[str, str]:
        engines = self.engines()
        infos = await gather_all(e.model_info() for e in engines)
        return {e.url: str(i.get("weight_version")) for e, i in zip(engines, infos)}

    async def aclose(self) -> None:
        if self._group is not None:
            try:
                await self.destroy_group()
            except Exception as e:  # noqa: BLE001
                log.warning("destroying the weight-update group: %s", e)
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def post_tensor_bucket(engine: EngineControl, payloads: list[str], version: int) -> None:
    """One flattened bucket to one engine: ``payloads[k]`` is for the engine's TP rank k."""
    await engine.post("/update_weights_from_tensor", {
        "serialized_named_tensors": payloads, "load_format": "flattened_bucket", "flush_cache": False,
        "weight_version": str(version)})


async def release_memory(engines: list[EngineControl], tags: Sequence[str], flush_timeout_s: float = 60.0) -> None:
    """Free the engines' memory (colocated training). SGLang asserts the scheduler is idle and dies otherwise, so:
    pause (``retract``: running requests go back to the queue), flush until idle, then release. The engines stay
    paused until ``resume_memory(..., resume_generation=True)``."""
    await gather_all(e.pause("retract") for e in engines)
    await gather_all(e.flush_cache(flush_timeout_s) for e in engines)
    await gather_all(e.release_memory(tags) for e in engines)
    log.info("released %s on %d engine(s)", ",".join(tags), len(engines))


async def resume_memory(engines: list[EngineControl], tags: Sequence[str], resume_generation: bool) -> None:
    await gather_all(e.resume_memory(tags) for e in engines)
    if resume_generation:
        await gather_all(e.resume_generation() for e in engines)
    log.info("resumed %s on %d engine(s)%s", ",".join(tags), len(engines), "" if resume_generation else " (still paused)")


def prune_weight_dirs(root: Path, keep: int, current: int) -> None:
    """Keep ``weight_v<current>`` and the ``keep - 1`` newest versions below it under ``root``; delete the rest,
    also versions above ``current`` (left by an earlier run in the same folder: a resumed run counts from 1 again).
    Call it after the engines loaded ``current``."""
    import shutil

    found = {int(p.name[8:]): p for p in Path(root).glob("weight_v*") if p.name[8:].isdigit()}
    kept = sorted(v for v in found if v <= current)[-max(keep, 1):]
    for v, p in found.items():
        if v not in kept:
            shutil.rmtree(p, ignore_errors=True)
