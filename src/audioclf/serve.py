"""HTTP service over a checkpoint: ``audioclf serve CHECKPOINT --port 8000``.

Endpoints (FastAPI; the schema is at ``/openapi.json``, interactive docs at ``/docs``):

- ``POST /predict``   multipart field ``file`` -> ranked labels of the whole recording
- ``POST /timeline``  multipart field ``file`` -> frame-wise scores (and, with
  ``?spectrogram=true``, a display spectrogram as a PNG data URI): the player's JSON
- ``GET /``           a page to upload a file and see it with the playhead player
- ``GET /health``     model facts, limits and batching counters

Requests that arrive together are scored together: ``/predict`` hands its windows to a
micro-batcher that waits up to ``batch_wait_ms`` for more requests, then runs one
forward pass over the windows of all of them (up to ``max_batch`` windows per pass).
All model work happens on one thread, so concurrent requests queue for the model
instead of competing for the CPU. ``/timeline`` runs ``Classifier.predict_timeline``
on that same thread, one request at a time.

Uploads are checked before they are decoded: the request body size (413), that there is
a body (400), that it is multipart with a file in field ``file`` (415/422), that the
file decodes as audio (422) and is not longer than ``max_seconds`` (422). A ``/timeline``
``hop`` below ``timeline_min_hop``, or one giving more than ``timeline_max_windows``
windows, is refused (422) before any scoring.

Importing this module needs FastAPI (and python-multipart for the uploads); ``serve``
also needs uvicorn. The rest of audioclf needs none of them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audioclf.errors import AudioclfError, ConfigError
from audioclf.inference.classifier import Classifier
from audioclf.inference.timeline import Timeline, WindowCutter, count_windows, ranked

log = logging.getLogger(__name__)

UPLOAD_FIELD = "file"
# Room for the multipart envelope (boundaries, part headers) around a file at the limit.
MULTIPART_SLACK = 16 * 1024


@dataclass(frozen=True)
class ServiceSettings:
    """Limits and batching of the service."""

    max_upload_bytes: int = 25 * 1024 * 1024  # one uploaded file
    max_seconds: float = 600.0  # audio duration
    max_batch: int = 16  # windows per forward pass
    batch_wait_ms: float = 5.0  # how long the first request waits for others to join it
    top_k: int = 5  # labels returned by /predict unless ?top_k= says otherwise
    timeline_max_classes: int = 50  # classes in a /timeline answer unless ?max_classes= says otherwise
    timeline_min_hop: float = 0.01  # seconds: the smallest ?hop= /timeline accepts
    timeline_max_windows: int = 10_000  # windows one /timeline request may score
    # decoded samples (native rate x duration x channels, from the header, before decoding):
    # 48 kHz stereo for 10 minutes; a 384 kHz FLAC of silence is refused from its header
    max_decoded_samples: int = 48_000 * 2 * 600
    decode_workers: int = 2  # uploads decoded at once (each holds at most a block at the native rate)
    request_timeout: float = 60.0  # seconds for a request's headers and body to arrive; then 408 / closed
    max_connections: int = 64  # open connections at once; more get 503 (uvicorn's limit_concurrency)

    def __post_init__(self) -> None:
        checks = {
            "max_decoded_samples": self.max_decoded_samples >= 1,
            "decode_workers": self.decode_workers >= 1,
            "request_timeout": self.request_timeout > 0,
            "max_connections": self.max_connections >= 1,
            "max_upload_bytes": self.max_upload_bytes > 0,
            "max_seconds": self.max_seconds > 0,
            "max_batch": self.max_batch >= 1,
            "batch_wait_ms": self.batch_wait_ms >= 0,
            "top_k": self.top_k >= 1,
            "timeline_max_classes": self.timeline_max_classes >= 1,
            "timeline_min_hop": self.timeline_min_hop > 0,
            "timeline_max_windows": self.timeline_max_windows >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"service settings: {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)} out of range "
                             "(sizes, durations and counts must be positive; batch_wait_ms may be 0)")


# --- response schemas (documented in /openapi.json) -----------------------------------------


class LabelScore(BaseModel):
    label: str
    score: float = Field(description="probability: softmax for single-label models, sigmoid for multi-label ones")


class PredictResponse(BaseModel):
    file: str
    duration: float = Field(description="seconds of audio")
    task: str
    predictions: list[LabelScore] = Field(description="best first")


class TimelineResponse(BaseModel):
    file: str
    task: str
    duration: float
    window: float = Field(description="seconds per scored window")
    hop: float = Field(description="seconds between window starts")
    label_names: list[str] = Field(description="the classes in `scores` columns (the best `max_classes` by peak score)")
    times: list[float] = Field(description="window centres, seconds")
    edges: list[float] = Field(description="frame boundaries, seconds (frames + 1)")
    scores: list[list[float]] = Field(description="(frames, classes)")
    clip_scores: list[float]
    top: list[LabelScore]
    spectrogram: str | None = Field(None, description="PNG data URI of a log-mel spectrogram (with ?spectrogram=true)")
    spectrogram_axis: dict[str, Any] | None = Field(
        None, description="frequency ticks [[position from the bottom 0-1, label]], dB range and colours of the spectrogram"
    )


class BatchStats(BaseModel):
    requests: int = 0
    batches: int = 0
    forward_passes: int = 0
    windows: int = 0
    largest_batch: int = Field(0, description="most requests scored together in one batch")


class HealthResponse(BaseModel):
    status: str
    model: str
    task: str
    classes: int
    sample_rate: int
    clip_seconds: float
    limits: dict[str, int | float]
    batching: BatchStats


def error_responses() -> dict[int | str, dict[str, Any]]:
    """The 4xx answers of the upload endpoints, for the schema (a fresh dict per app)."""
    return {
        400: {"description": "empty body or malformed multipart"},
        413: {"description": "upload larger than the limit"},
        415: {"description": "not multipart/form-data"},
        422: {"description": "no file in field 'file', not decodable audio, or longer than the limit"},
    }


def upload_body() -> dict[str, Any]:
    """The request body /predict and /timeline expect, for the schema: the handlers read
    the multipart form themselves to give their own error messages."""
    return {"requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [UPLOAD_FIELD],
                    "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary", "description": "an audio file"}},
                }
            }
        },
    }}


# --- micro-batching ----------------------------------------------------------------------


@dataclass
class _Pending:
    windows: np.ndarray
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    """Collects scoring requests arriving within ``max_wait`` seconds of each other and
    scores their windows in one call of ``score_fn`` on ``executor``'s thread.

    ``score_fn`` takes ``(windows, samples)`` and returns ``(windows, classes)``; each
    request gets back the rows of its own windows, in order. ``stats`` counts requests,
    batches and forward passes (``/health`` shows them).
    """

    def __init__(
        self, score_fn: Callable[[np.ndarray], np.ndarray], executor: ThreadPoolExecutor, max_batch: int = 16,
        max_wait: float = 0.005,
    ) -> None:
        self.score_fn = score_fn
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audioclf-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        while self._queue is not None and not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the service is shutting down"))

    async def score(self, windows: np.ndarray) -> np.ndarray:
        """Scores ``(windows, classes)`` of one request's ``(windows, samples)``."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called (is the app's lifespan running?)")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(windows, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        """The next batch: the first waiting request and those that join it in time."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        size = len(batch[0].windows)
        deadline = loop.time() + self.max_wait
        while size < self.max_batch:
            remaining = deadline - loop.time()
            try:
                item = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            batch.append(item)
            size += len(item.windows)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            waves = np.concatenate([p.windows for p in batch])
            try:
                scores = await loop.run_in_executor(self.executor, self.score_fn, waves)
            except Exception as err:  # noqa: BLE001 - handed to every waiting request
                log.exception("scoring a batch of %d requests failed", len(batch))
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(err)
                continue
            s = self.stats
            s.requests += len(batch)
            s.batches += 1
            s.forward_passes += -(-len(waves) // self.max_batch)
            s.windows += len(waves)
            s.largest_batch = max(s.largest_batch, len(batch))
            log.debug("scored %d request(s), %d windows, in one batch", len(batch), len(waves))
            start = 0
            for p in batch:
                rows = scores[start : start + len(p.windows)]
                start += len(p.windows)
                if not p.future.done():  # the client may have gone away
                    p.future.set_result(rows)


# --- upload checks -----------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before it is parsed.

    A declared ``Content-Length`` over the limit is refused at once (a client that sent
    ``Expect: 100-continue`` never sends the body); a body that grows past the limit
    while streaming is cut off with the same answer.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, file_limit: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = (f"upload too large: this service accepts files up to {file_limit} bytes "
                        f"({file_limit / 2**20:.1f} MiB)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._drain(receive)
            await self._refuse(send)
            return
        received = 0
        tracking_send = _SendTracker(send)

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if tracking_send.started:
                raise
            await self._drain(receive)
            await self._refuse(send)

    async def _drain(self, receive: Receive, limit: int = 8 * 2**20) -> None:
        # Read (a bounded part of) what the client is already sending, so that a client
        # that writes the whole body before reading gets the 413 instead of a reset.
        seen = 0
        while seen < limit:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse({"detail": self.message}, status_code=413, headers={"connection": "close"})
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


async def read_upload(request: Request, settings: ServiceSettings) -> Upload:
    """The uploaded file of a request, or an HTTP error saying what is wrong with it."""
    body = await request.body()  # bounded by BodySizeLimit; the form parser reuses it
    if not body:
        raise HTTPException(400, f"empty request body: send the audio as multipart/form-data in field '{UPLOAD_FIELD}' "
                                 f"(e.g. curl -F {UPLOAD_FIELD}=@clip.wav)")
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise HTTPException(415, f"expected multipart/form-data with the audio in field '{UPLOAD_FIELD}', "
                                 f"got content type {ctype or 'none'!r}")
    # the context closes the form's spooled files whatever happens next
    async with request.form(max_files=4, max_fields=16) as form:
        item = form.get(UPLOAD_FIELD)
        if item is None:
            fields = sorted(set(form.keys()))
            raise HTTPException(422, f"no field '{UPLOAD_FIELD}' in the form (got {fields or 'no fields'}): "
                                     f"send the audio file as multipart field '{UPLOAD_FIELD}'")
        if not isinstance(item, UploadFile):
            raise HTTPException(422, f"field '{UPLOAD_FIELD}' holds text, not a file: upload the audio as a file")
        data = await item.read()
        name = item.filename or "upload"
    if not data:
        raise HTTPException(400, f"uploaded file {name!r} is empty (0 bytes)")
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, f"upload too large: {name!r} is {len(data)} bytes, this service accepts files up to "
                                 f"{settings.max_upload_bytes} bytes")
    return Upload(name, data)


def decode_upload(upload: Upload, sample_rate: int, max_seconds: float, max_decoded_samples: int | None = None) -> np.ndarray:
    """Mono float32 audio at ``sample_rate`` from uploaded bytes; HTTP 422 when they are
    not audio, run longer than ``max_seconds`` or hold more than ``max_decoded_samples``
    (rate x duration x channels, read from the header before anything is decoded).
    Decoded block by block, so memory holds the result at ``sample_rate`` plus one block,
    whatever the file's own rate. Blocking: call in a thread."""
    from audioclf.audio.io import AudioDecodeError, audio_info, stream_audio

    suffix = Path(upload.name).suffix.lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""
    with tempfile.TemporaryDirectory(prefix="audioclf-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(upload.data)
        try:
            info = audio_info(path)
            if info.duration > max_seconds:
                raise HTTPException(422, f"{upload.name!r} is {info.duration:.1f} s long; this service accepts "
                                         f"audio up to {max_seconds:g} s")
            samples = info.frames * info.channels
            if max_decoded_samples is not None and samples > max_decoded_samples:
                raise HTTPException(422, f"{upload.name!r} would decode to {samples} samples ({info.sample_rate} Hz x "
                                         f"{info.duration:.1f} s x {info.channels} channel(s)); this service decodes at most "
                                         f"{max_decoded_samples}")
            # a header may understate the length: stop once past what it allowed
            limit = int(max_seconds * sample_rate) + sample_rate
            blocks, total = [], 0
            for block in stream_audio(path, sample_rate, block_seconds=5.0):
                total += block.size
                if total > limit:
                    raise HTTPException(422, f"{upload.name!r} holds more audio than its header declares; refused")
                blocks.append(block)
        except AudioDecodeError as err:
            # the message names the temporary file: name the upload instead
            reason = str(err).replace(str(path), repr(upload.name))
            raise HTTPException(422, f"not an audio file this service can decode: {reason}") from err
    return np.concatenate(blocks)


class _TooSlow(Exception):
    pass


class _SendTracker:
    """``send`` for a wrapped app, remembering whether the response has started: after
    that, a middleware can no longer answer an error with a response of its own."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


class RequestDeadline:
    """ASGI middleware: a request body must arrive within ``seconds`` of the request, or
    the client gets 408 and the connection is closed (a slow upload holds a connection
    and a buffer; one that trickles forever would hold them forever)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        tracking_send = _SendTracker(send)
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body, receive() waits for a disconnect: no deadline
                return await receive()
            remaining = deadline - loop.time()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.001))
            except asyncio.TimeoutError:
                raise _TooSlow from None
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done = True
            return message

        try:
            await self.app(scope, timed_receive, tracking_send)
        except _TooSlow:
            if tracking_send.started:
                raise
            log.info("closing a request whose body did not arrive within %g s", self.seconds)
            response = JSONResponse({"detail": f"request body not received within {self.seconds:g} s"}, status_code=408,
                                    headers={"connection": "close"})
            await response({"type": "http"}, _no_receive, send)


def slow_client_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose request headers do not arrive
    within ``seconds`` (of connecting, or of the previous response): uvicorn alone waits
    forever for them."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class SlowClientGuard(H11Protocol):
        header_timeout = seconds

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def _arm(self) -> None:
            old = getattr(self, "_guard", None)
            if old is not None:
                old.cancel()
            armed_for = self.cycle  # a new request replaces it once its headers are in
            self._guard = self.loop.call_later(self.header_timeout, self._check, armed_for)

        def _check(self, armed_for: Any) -> None:
            if self.cycle is armed_for and not self.transport.is_closing():
                log.info("closing a connection that sent no complete request within %g s", self.header_timeout)
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            guard = getattr(self, "_guard", None)
            if guard is not None:
                guard.cancel()
            super().connection_lost(exc)

    return SlowClientGuard


# --- the application ---------------------------------------------------------------------


def service_page() -> str:
    """The upload page: the report's player fed by POST /timeline."""
    from audioclf.reporting.player import read_asset

    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>audioclf</title><style>{read_asset('style.css')}</style>"
        f"<script>{read_asset('player.js')}</script></head><body><main>"
        '<header><h1>audioclf</h1><p id="model-line">&nbsp;</p></header>'
        '<section><h2>Label a recording</h2>'
        f'<form id="upload"><input type="file" id="file" name="{UPLOAD_FIELD}" accept="audio/*"></form>'
        '<p id="status" class="muted">choose an audio file: it is uploaded to this service and labelled frame by frame</p>'
        '<ul class="labels-list" id="top-labels"></ul>'
        '<audio id="acp-audio" class="acp-audio" controls preload="auto"></audio>'
        '<div id="player"></div></section>'
        f"<script>{read_asset('service.js')}</script></main></body></html>\n"
    )


def create_app(
    classifier: Classifier, settings: ServiceSettings | None = None, model_name: str | None = None
) -> FastAPI:
    """The FastAPI application serving ``classifier``. All state lives on the app."""
    settings = settings or ServiceSettings()
    name = model_name or str(classifier.info.get("model", "model"))
    task = "multi_label" if classifier.multi_label else "single_label"

    def score_windows(windows: np.ndarray) -> np.ndarray:
        return classifier.score_windows(windows, settings.max_batch)

    async def score_chunked(windows: Iterable[np.ndarray], batcher: MicroBatcher) -> np.ndarray:
        """Scores ``(windows, classes)``, handed to the batcher ``max_batch`` windows at a
        time: a long recording waits its turn chunk by chunk, so the requests that arrive
        meanwhile are scored between its chunks instead of after all of them."""
        parts = []
        chunk: list[np.ndarray] = []
        for w in windows:
            chunk.append(w)
            if len(chunk) == settings.max_batch:
                parts.append(await batcher.score(np.stack(chunk)))
                chunk = []
        if chunk:
            parts.append(await batcher.score(np.stack(chunk)))
        return np.concatenate(parts)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # one thread owns the model: batches and timelines queue for it
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audioclf-model")
        # decoding has its own bounded pool: at most decode_workers uploads are decoded at once
        decoders = ThreadPoolExecutor(max_workers=settings.decode_workers, thread_name_prefix="audioclf-decode")
        batcher = MicroBatcher(score_windows, executor, settings.max_batch, settings.batch_wait_ms / 1000)
        batcher.start()
        app.state.batcher = batcher
        app.state.executor = executor
        app.state.decoders = decoders
        log.info("serving %s (%s, %d classes)", name, task, len(classifier.label_names))
        try:
            yield
        finally:
            await batcher.stop()
            executor.shutdown(wait=True)
            decoders.shutdown(wait=True)

    app = FastAPI(
        title="audioclf",
        version=_version(),
        description=f"Audio classification with {name} ({task}, {len(classifier.label_names)} classes).",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes + MULTIPART_SLACK, file_limit=settings.max_upload_bytes)
    app.add_middleware(RequestDeadline, seconds=settings.request_timeout)  # outermost: it times the whole body

    def check_window_count(samples: int, hop: float | None) -> None:
        """HTTP 422 when a /timeline ``hop`` would cut more windows than the service scores."""
        step = classifier.clip_samples // 2 if hop is None else int(round(hop * classifier.sample_rate))
        if step < 1:  # predict_timeline says why
            return
        count = count_windows(samples, classifier.clip_samples, step)
        if count > settings.timeline_max_windows:
            raise HTTPException(
                422, f"hop={step / classifier.sample_rate:g} s gives {count} windows over {samples / classifier.sample_rate:.1f} s "
                     f"of audio; this service scores at most {settings.timeline_max_windows}: use a larger hop "
                     f"(at least {samples / classifier.sample_rate / settings.timeline_max_windows:.3g} s)")

    async def decoded(request: Request, check: Callable[[], None] | None = None) -> tuple[Upload, np.ndarray]:
        """The upload and its audio; ``check`` runs once the body is read, before decoding."""
        upload = await read_upload(request, settings)
        if check is not None:
            check()
        wave = await asyncio.get_running_loop().run_in_executor(
            request.app.state.decoders, decode_upload, upload, classifier.sample_rate, settings.max_seconds,
            settings.max_decoded_samples)
        return upload, wave

    @app.post("/predict", response_model=PredictResponse, responses=error_responses(), openapi_extra=upload_body(),
              summary="ranked labels of an uploaded recording")
    async def predict(request: Request, top_k: int = Query(settings.top_k, ge=1, le=1000)) -> PredictResponse:
        upload, wave = await decoded(request)
        n = classifier.clip_samples
        windows = (w for _, w in WindowCutter(n, n // 2).cut([wave]))  # as Classifier.windows, lazily
        window_scores = await score_chunked(windows, request.app.state.batcher)
        clip = window_scores.mean(axis=0)  # as Classifier.scores: windows averaged
        order = ranked(clip, top_k)  # as Classifier.predict
        return PredictResponse(
            file=upload.name,
            duration=wave.size / classifier.sample_rate,
            task=task,
            predictions=[LabelScore(label=classifier.label_names[i], score=float(clip[i])) for i in order],
        )

    @app.post("/timeline", responses={200: {"model": TimelineResponse}, **error_responses()}, openapi_extra=upload_body(),
              summary="frame-wise scores of an uploaded recording")
    async def timeline(
        request: Request,
        spectrogram: bool = Query(False, description="include a display spectrogram (PNG data URI)"),
        max_classes: int = Query(settings.timeline_max_classes, ge=1, description="classes kept, by peak score"),
        hop: float | None = Query(None, gt=0, allow_inf_nan=False, description=f"seconds between windows (default: half "
                                  f"a window; at least {settings.timeline_min_hop:g} s and at most "
                                  f"{settings.timeline_max_windows} windows)"),
    ) -> JSONResponse:
        from audioclf.reporting.player import display_spectrogram, timeline_payload

        def check_hop() -> None:
            if hop is not None and not (math.isfinite(hop) and hop >= settings.timeline_min_hop):
                raise HTTPException(422, f"hop={hop:g} s is not allowed: this service accepts finite hop >= "
                                         f"{settings.timeline_min_hop:g} s")

        check_hop()  # before the upload is even read
        upload, wave = await decoded(request)
        check_window_count(wave.size, hop)
        win = classifier.clip_samples
        step = win // 2 if hop is None else int(round(hop * classifier.sample_rate))
        if step < 1:
            raise HTTPException(422, f"hop={hop:g} s is shorter than one sample at {classifier.sample_rate} Hz")
        cutter = WindowCutter(win, step)
        starts: list[int] = []

        def windows() -> Iterator[np.ndarray]:
            for start, w in cutter.cut([wave]):
                starts.append(start)
                yield w

        # scored chunk by chunk through the batcher, between other requests (see score_chunked)
        scores = await score_chunked(windows(), request.app.state.batcher)
        tl = Timeline.from_windows(starts, scores, rate=float(classifier.sample_rate), window=win, hop=step,
                                   total=cutter.total, label_names=classifier.label_names, multi_label=classifier.multi_label)

        def payload() -> dict[str, Any]:
            spec = display_spectrogram(wave, classifier.sample_rate) if spectrogram else None
            return timeline_payload(tl, spec, max_classes=max_classes)

        # the spectrogram and the JSON are CPU work too, but not the model's: the decode pool
        body = await asyncio.get_running_loop().run_in_executor(request.app.state.decoders, payload)
        return JSONResponse({"file": upload.name, "task": task, **body})

    @app.get("/health", response_model=HealthResponse, summary="model facts, limits, batching counters")
    async def health(request: Request) -> HealthResponse:
        return HealthResponse(
            status="ok",
            model=name,
            task=task,
            classes=len(classifier.label_names),
            sample_rate=classifier.sample_rate,
            clip_seconds=classifier.clip_samples / classifier.sample_rate,
            limits={"max_upload_bytes": settings.max_upload_bytes, "max_seconds": settings.max_seconds,
                    "max_batch": settings.max_batch, "batch_wait_ms": settings.batch_wait_ms,
                    "timeline_min_hop": settings.timeline_min_hop, "timeline_max_windows": settings.timeline_max_windows,
                    "max_decoded_samples": settings.max_decoded_samples, "decode_workers": settings.decode_workers,
                    "request_timeout": settings.request_timeout, "max_connections": settings.max_connections},
            batching=request.app.state.batcher.stats.model_copy(),
        )

    @app.get("/", response_class=HTMLResponse, summary="upload page with the playhead player")
    async def page() -> HTMLResponse:
        return HTMLResponse(service_page())

    return app


def _version() -> str:
    from audioclf import __version__

    return __version__


def serve(
    checkpoint: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServiceSettings | None = None,
    device: str = "cpu",
    log_level: str = "info",
    *,
    model: str | None = None,
    offline: bool = False,
) -> None:
    """Load ``checkpoint`` (any model source: an audioclf checkpoint, a published file, a
    catalog name, ``hf:ORG/REPO``) and serve it with uvicorn until interrupted."""
    import uvicorn

    t0 = time.time()
    classifier = Classifier.from_pretrained(checkpoint, model=model, offline=offline, device=device)
    app = create_app(classifier, settings, model_name=f"{classifier.info.get('model', 'model')} ({Path(checkpoint).name})")
    log.info("loaded %s in %.1f s; listening on http://%s:%d", checkpoint, time.time() - t0, host, port)
    settings = settings or ServiceSettings()
    # uvicorn shuts down gracefully on Ctrl-C and then raises the signal again, into the
    # handler that was there before it: this one notes it, so the CLI can say "interrupted"
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda sig, frame: interrupted.append(sig))
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, http=slow_client_protocol(settings.request_timeout),
                    limit_concurrency=settings.max_connections, timeout_keep_alive=5)
    except SystemExit as err:  # uvicorn exits when it cannot start (e.g. the port is taken)
        raise AudioclfError(f"could not serve on {host}:{port} (the log above says why; is the port in use?)") from err
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt
