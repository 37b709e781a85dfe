"""``ufl serve``: one HTTP server, the frozen backbone once per image, every registered head on it.

Endpoints (FastAPI on uvicorn, the ``serve`` extra):

* ``GET /tasks`` -> ``{"tasks": [names], "info": {name: {"dataset", "kind", "metric", "size",
  "classes", "precision"}}, "fingerprint": str}``: every registered task, as of the last manifest
  change (``precision``: the autocast the head runs in, its record's, as in ``ufl predict``).
* ``POST /predict`` (multipart form field ``image``; query ``format=png|array``, ``tasks=a,b``) ->
  JSON keyed by task name: ``{name: {"kind", "shape", "format", "data"}}``. ``png``: the colour-mapped
  prediction (as ``ufl predict`` writes it) as base64 PNG; ``array``: the prediction itself as nested
  lists (labels; metres; unit normals (3, H, W); probabilities), at the image's own size. Each
  head runs exactly as in ``ufl predict`` (the same code: its recorded precision and output
  activation, :func:`ufl.workspace.predict.apply_heads`), so both give the same numbers.
* ``GET /health`` -> ``{"status": "ok", "tasks": n, "batches": n, "requests": n}``.

Tasks added (``ufl add-task``) or removed while the server runs are picked up without a restart:
a watcher thread compares the manifest's mtime and sha256 every ``poll`` seconds, loads the new
heads beside the old ones, and swaps one reference (the :class:`ServingState`). A batch keeps the
state it started with, so no request is dropped or sees half a change.

Micro-batching: requests wait in a queue for at most ``max_wait`` seconds or until ``max_batch``
have arrived; each batch runs the backbone once per input size (tasks trained at one size share one
pass) and every head on the features, in one worker thread, off the event loop.

Only loopback addresses are served (127.0.0.0/8, ::1, localhost): the server has no
authentication; put a reverse proxy in front of it to expose it.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.

import asyncio
import base64
import hashlib
import io
import ipaddress
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UflError
from .kinds import get_kind
from .runtime import resolve_device

__all__ = ["ModelServer", "ServingState", "create_app", "serve", "check_loopback", "decode_image"]

log = logging.getLogger(__name__)


def check_loopback(host: str) -> str:
    """``host`` when it is a loopback address (or ``localhost``), else a :class:`UflError`."""
    if host == "localhost":
        return host
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise UflError(f"--host {host}: ufl serve only listens on loopback addresses (127.0.0.1, ::1, localhost); "
                   f"it has no authentication, so put a reverse proxy in front of it to serve other hosts")


def decode_image(data: bytes) -> np.ndarray:
    """Uploaded bytes (JPEG, PNG, ...) -> (H, W, 3) uint8 RGB; a :class:`UflError` for anything else."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UflError("the form field 'image' is empty; send an image file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UflError(f"the uploaded 'image' is not a readable image ({str(e).splitlines()[0][:120]})") from None


@dataclass
class ServingState:
    """An immutable snapshot: the heads of every registered task, grouped by input size."""

    signature: tuple[int, str]
    heads: dict[str, tuple]  # name -> ufl.workspace.predict.load_heads's (head, spec, dataset, precision, activation)
    sizes: dict[str, tuple[int, int]]
    info: dict[str, dict[str, Any]] = field(default_factory=dict)

    def groups(self, tasks: Sequence[str]) -> dict[tuple[int, int], list[str]]:
        out: dict[tuple[int, int], list[str]] = {}
        for name in tasks:
            out.setdefault(self.sizes[name], []).append(name)
        return out


@dataclass
class _Request:
    image: np.ndarray
    tasks: list[str] | None
    future: asyncio.Future


class ModelServer:
    """The model side of ``ufl serve`` (usable without HTTP): backbone, hot-reloaded heads, batcher.

    Args:
        ws: the :class:`~ufl.workspace.Workspace`.
        device: ``auto``/``cpu``/``cuda``.
        max_batch: most requests in one batch.
        max_wait: seconds the first request of a batch waits for more.
        poll: seconds between manifest checks of the watcher thread.
    """

    def __init__(self, ws, device: str = "auto", max_batch: int = 8, max_wait: float = 0.01, poll: float = 0.5):
        self.ws = ws
        self.device = resolve_device(device)
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait)
        self.poll = float(poll)
        self.backbone = ws.backbone(self.device)
        self._lock = threading.Lock()
        self.state = self._load(None)
        self.batches = 0
        self.requests = 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._queue: asyncio.Queue | None = None
        self._batcher: asyncio.Task | None = None

    # -- hot reload -----------------------------------------------------------------------------
    def _signature(self) -> tuple[int, str]:
        path = self.ws.manifest.path
        data = path.read_bytes()
        return path.stat().st_mtime_ns, hashlib.sha256(data).hexdigest()

    def _load(self, old: ServingState | None) -> ServingState:
        """A new state from the manifest (heads loaded by ``ufl predict``'s
        :func:`~ufl.workspace.predict.load_heads`); heads whose file and precision are unchanged are
        reused from ``old``."""
        from .workspace.predict import load_heads

        signature = self._signature()
        tasks = self.ws.tasks
        unchanged = {name for name, record in tasks.items()
                     if old is not None and name in old.heads
                     and old.info[name]["head_sha256"] == record["head_sha256"]
                     and old.info[name]["precision"] == record.get("precision")}
        heads = {name: old.heads[name] for name in unchanged}
        heads.update(load_heads(self.ws, [name for name in tasks if name not in unchanged], self.device))
        sizes, info = {}, {}
        for name, record in tasks.items():
            spec = heads[name][1]
            sizes[name] = tuple(record["eval"]["size"])
            info[name] = {"dataset": record["dataset"], "kind": spec.kind, "metric": spec.metric,
                          "size": list(sizes[name]), "classes": spec.out_channels(record["dataset"]),
                          "precision": record.get("precision"), "target": spec.name,
                          "head_sha256": record["head_sha256"]}
        return ServingState(signature, {name: heads[name] for name in tasks}, sizes, info)

    def refresh(self) -> bool:
        """Reload when the manifest changed (mtime or content); True when the tasks were swapped."""
        with self._lock:
            try:
                signature = self._signature()
            except OSError:
                return False
            if signature == self.state.signature:
                return False
            try:
                new = self._load(self.state)
            except Exception as e:  # a manifest mid-change or a head being written: keep serving, retry
                log.warning("serve: could not reload the tasks yet (%s); keeping %d task(s)", e, len(self.state.heads))
                return False
            added = sorted(set(new.heads) - set(self.state.heads))
            removed = sorted(set(self.state.heads) - set(new.heads))
            self.state = new  # one reference swap: running batches keep the state they started with
        log.info("serve: tasks reloaded (%d): added %s, removed %s", len(new.heads), added or "none",
                 removed or "none")
        return True

    def start_watcher(self) -> None:
        def watch():
            while not self._stop.wait(self.poll):
                self.refresh()

        self._watcher = threading.Thread(target=watch, name="ufl-serve-watcher", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()

    # -- inference ------------------------------------------------------------------------------
    def tasks_info(self) -> dict[str, Any]:
        state = self.state
        return {"tasks": sorted(state.heads), "fingerprint": self.ws.fingerprint,
                "info": {n: {k: v for k, v in i.items() if k not in ("head_sha256", "target")}
                         for n, i in sorted(state.info.items())}}

    @torch.no_grad()
    def predict_batch(self, images: Sequence[np.ndarray], tasks: Sequence[Sequence[str] | None],
                      state: ServingState | None = None) -> list[dict[str, torch.Tensor]]:
        """Predictions for each image (H_i, W_i, 3) uint8, of its ``tasks`` (None: all), at its own
        size: ``[{task: postprocessed prediction (labels (H, W) / (C, H, W) maps)}]``. The backbone
        runs once per input size for the whole batch; the heads run as in ``ufl predict``
        (:func:`~ufl.workspace.predict.apply_heads`)."""
        from .workspace.predict import apply_heads

        state = state or self.state
        wanted = [list(state.heads) if t is None else list(t) for t in tasks]
        for names in wanted:
            unknown = [n for n in names if n not in state.heads]
            if unknown:
                raise UflError(f"unknown task(s) {unknown}; registered: {', '.join(sorted(state.heads)) or 'none'}")
        results: list[dict[str, torch.Tensor]] = [{} for _ in images]
        all_names = list(dict.fromkeys(n for names in wanted for n in names))
        tensors = [torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)[None] for img in images]
        for size, names in state.groups(all_names).items():
            members = [i for i, w in enumerate(wanted) if any(n in w for n in names)]
            batch = torch.cat([F.interpolate(tensors[i], size=size, mode="bilinear", align_corners=False,
                                             antialias=True) for i in members]).to(self.device)
            features = self.backbone(batch)
            for name, result in apply_heads({n: state.heads[n] for n in names}, features, size).items():
                for row, i in enumerate(members):
                    if name in wanted[i]:
                        results[i][name] = get_kind(result["kind"]).resize_prediction(result["pred"][row],
                                                                                      tuple(images[i].shape[:2]))
        self.batches += 1
        self.requests += len(images)
        return results

    def encode(self, name: str, pred: torch.Tensor, fmt: str, state: ServingState) -> dict[str, Any]:
        """One task's prediction as JSON: base64 PNG (``ufl predict``'s colours) or nested lists."""
        from PIL import Image

        from .viz import colorize

        info = state.info[name]
        if fmt == "array":
            array = pred.numpy()
            data = array.tolist() if array.dtype.kind in "iu" else np.round(array.astype(np.float64), 5).tolist()
            return {"kind": info["kind"], "shape": list(array.shape), "format": "array", "data": data}
        rgb = colorize(info["kind"], pred, dataset=info["dataset"], task=info["target"], num_classes=info["classes"])
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG")
        return {"kind": info["kind"], "shape": list(pred.shape), "format": "png",
                "data": base64.b64encode(buffer.getvalue()).decode("ascii")}

    # -- micro-batching -------------------------------------------------------------------------
    async def submit(self, image: np.ndarray, tasks: list[str] | None) -> tuple[dict[str, torch.Tensor], ServingState]:
        """Queue one image; resolves with its predictions (and the state that made them). Unknown
        task names are refused here, before they could fail the other requests of a batch."""
        if tasks is not None:
            unknown = [n for n in tasks if n not in self.state.heads]
            if unknown:
                raise UflError(f"unknown task(s) {unknown}; registered: {', '.join(sorted(self.state.heads)) or 'none'}")
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._batcher = asyncio.get_running_loop().create_task(self._run_batches())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(image, tasks, future))
        return await future

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            state = self.state
            try:
                outputs = await loop.run_in_executor(
                    None, self.predict_batch, [r.image for r in batch], [r.tasks for r in batch], state)
            except Exception as e:  # answer every request of the batch with the error, keep serving
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(e)
                continue
            for r, out in zip(batch, outputs):
                if not r.future.done():
                    r.future.set_result((out, state))


def create_app(server: ModelServer):
    """The FastAPI application around ``server``."""
    from fastapi import FastAPI, File, HTTPException, Query, UploadFile
    from fastapi.concurrency import run_in_threadpool

    app = FastAPI(title="ufl serve", description="One frozen backbone, every registered Medusa head.")

    @app.get("/tasks")
    def tasks() -> dict[str, Any]:
        return server.tasks_info()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "tasks": len(server.state.heads), "batches": server.batches,
                "requests": server.requests}

    @app.post("/predict")
    async def predict(image: UploadFile = File(...), format: str = Query("png", pattern="^(png|array)$"),
                      tasks: str | None = Query(None)) -> dict[str, Any]:
        try:
            array = decode_image(await image.read())
            names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
            out, state = await server.submit(array, names)
        except UflError as e:
            raise HTTPException(status_code=400, detail=str(e)) from None
        return await run_in_threadpool(lambda: {n: server.encode(n, p, format, state) for n, p in out.items()})

    return app


def serve(ws, host: str = "127.0.0.1", port: int = 8000, *, device: str = "auto", max_batch: int = 8,
          max_wait: float = 0.01, poll: float = 0.5) -> None:
    """Run the server until interrupted (see the module docstring)."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise UflError(f"ufl serve needs fastapi, uvicorn and python-multipart ({e.name} is missing); "
                       f"pip install 'ufl[serve]'") from None
    check_loopback(host)
    server = ModelServer(ws, device=device, max_batch=max_batch, max_wait=max_wait, poll=poll)
    server.start_watcher()
    log.info("serving %d task(s) of %s on http://%s:%d (GET /tasks, POST /predict)", len(server.state.heads),
             ws.root, host, port)
    try:
        uvicorn.run(create_app(server), host=host, port=int(port), log_level="warning")
    finally:
        server.stop()
