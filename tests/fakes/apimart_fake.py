"""A loopback fake of APIMart (Flux Kontext) for tests: real HTTP on 127.0.0.1, real images.

Usage::

    fake = FakeApimart()            # api_key defaults to FakeApimart.DEFAULT_KEY
    await fake.start()
    ...  ApimartClient(session, fake.base_url, fake.api_key) ...
    await fake.close()

What it does, following the API as docs/ARCHITECTURE.md describes it:

* ``POST /v1/images/generations`` checks ``Authorization: Bearer <key>`` (401 otherwise, echoing the
  wrong key in the message as some APIs do, to test redaction), validates the body like the docs
  (400 with a message otherwise), then REALLY downloads ``image_urls[0]`` with its own aiohttp
  session (unreachable, non-200 or undecodable → 400 "image url unreachable …"), and makes the
  result: **the input with inverted colours** (``(r, g, b)`` → ``(255-r, 255-g, 255-b)``, alpha
  kept, same dimensions whatever ``size`` says), encoded as PNG or JPEG per ``response_format``.
  Without an image (text-to-image) the result is a **solid colour** derived from the prompt
  (:meth:`FakeApimart.colour_for`) in the requested aspect, long side 256 px (16:9 by default,
  1:1 for ``auto``/``match_input_image``). Results are served at ``{base_url}/results/{name}``.
* ``POST /v1/uploads/images`` (multipart ``file``; JPEG/PNG/WebP/GIF sniffed by magic bytes;
  > 20 MB → 413, missing field or other format → 400) stores the file and serves it at
  ``{base_url}/f/image/{name}``; replies with the documented JSON.
* ``GET /v1/tasks/{id}`` computes the status from loop time since submission (no background tasks):
  queued for the first ``queue_fraction`` of ``duration``, then running with ``progress_steps``,
  then completed (or failed with ``fail_reason``). ``fake.polls[task_id]`` counts the polls.

Scripting: :meth:`script` (per next submission, or ``persist=True`` for all later ones; ``result=``
rewrites the result image's bytes),
:meth:`fail_next` (one-shot faults per endpoint: status/body/headers/raw bytes/delay/disconnect),
:meth:`slow_next`, :meth:`result_fault` (404, cross-host redirect, HTML, oversize),
:meth:`set_down` (listening socket closed → connection refused), :meth:`advance` (jump the clock).
Everything is recorded: ``requests``, ``submissions``, ``uploads``, ``polls``, ``tasks``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from PIL import Image, ImageOps

MODELS = ("flux-kontext-pro", "flux-kontext-max")
SIZES = ("match_input_image", "auto", "1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9", "9:21")
FORMATS = ("png", "jpg")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_INPUT_BYTES = 25 * 1024 * 1024
T2I_LONG_SIDE = 256

Endpoint = Literal["submit", "task", "upload", "result", "file"]
#: how a failure reason is written, how the submit reply and the result URL are shaped (see :class:`Script`)
FailShape = Literal["object", "string", "fail_reason"]
SubmitShape = Literal["list", "object"]
UrlShape = Literal["list", "string"]
#: what :meth:`FakeApimart.result_fault` breaks a result download with
ResultFaultKind = Literal["404", "redirect", "html", "oversize"]
ENDPOINTS = ("submit", "task", "upload", "result", "file")
DEFAULT_STATUS_NAMES = {
    "queued": "pending",
    "running": "processing",
    "completed": "completed",
    "failed": "failed",
}


# aiohttp >= 3.12 prefers typed request keys; plain strings still work on older versions
_SUBMISSION: Any = web.RequestKey("submission", object) if hasattr(web, "RequestKey") else "submission"


class _Auto:
    def __repr__(self) -> str:
        return "AUTO"


AUTO: Any = _Auto()


@dataclass
class Script:
    """How one task behaves. Times are seconds of loop time since submission."""

    duration: float = 0.3
    #: progress values reported while running, in order (None: never report progress)
    progress_steps: tuple[int, ...] | None = (10, 30, 50, 70, 90)
    #: ``estimated_time`` in the task (AUTO = duration, None = omitted)
    estimated_time: Any = AUTO
    #: share of ``duration`` spent queued (status "pending", progress 0)
    queue_fraction: float = 0.2
    #: when set, the task ends failed with this reason instead of completed
    fail_reason: str | None = None
    #: how the failure reason is written: error.message | error as string | fail_reason
    fail_shape: FailShape = "object"
    never_finish: bool = False
    #: submit reply: documented list ``data[0].task_id`` or newer object ``data.id``
    submit_shape: SubmitShape = "list"
    #: ``result.images[0].url`` as a list (documented) or a plain string
    url_shape: UrlShape = "list"
    #: raw status names per phase (merged over DEFAULT_STATUS_NAMES), e.g. {"running": "in_progress"}
    status_names: Mapping[str, str] = field(default_factory=dict)
    #: while queued, answer ``data`` as a one-element list
    list_while_queued: bool = False
    #: rewrites the result image's bytes (e.g. adds EXIF orientation and GPS, or makes it large)
    result: Callable[[bytes], bytes] | None = None

    def name(self, phase: str) -> str:
        return {**DEFAULT_STATUS_NAMES, **self.status_names}[phase]


@dataclass
class Fault:
    endpoint: str
    status: int
    body: Any = None
    headers: Mapping[str, str] | None = None
    raw: bytes | None = None
    times: int = 1
    delay: float = 0.0
    disconnect: bool = False
    passthrough: bool = False
    kind: str | None = None  # result faults: "redirect" | "oversize"
    size: int = 0
    location: str | None = None


@dataclass
class RecordedRequest:
    endpoint: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes | None
    at: float


@dataclass
class Submission:
    json: Any
    headers: dict[str, str]
    idempotency_key: str | None
    status: int | None = None  # HTTP status the fake answered (None: faulted before answering)
    task_id: str | None = None
    error: str | None = None


@dataclass
class UploadRecord:
    filename: str | None
    content_type: str | None
    size: int
    status: int
    url: str | None = None
    data: bytes | None = None


@dataclass
class FakeTask:
    id: str
    created: float  # loop time
    created_unix: int
    script: Script
    request: dict[str, Any]
    result_name: str
    result_url: str
    input_url: str | None


class FakeApimart:
    DEFAULT_KEY = "sk-test-fake-apimart-key-0123456789"

    def __init__(self, api_key: str = DEFAULT_KEY) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.submissions: list[Submission] = []
        self.uploads: list[UploadRecord] = []
        self.polls: Counter[str] = Counter()
        self.tasks: dict[str, FakeTask] = {}
        self.results: dict[str, tuple[bytes, str]] = {}  # name -> (bytes, content type)
        self.files: dict[str, tuple[bytes, str]] = {}  # uploaded/hosted files
        #: reply to a repeated Idempotency-Key with the first task (header idempotency-replayed: true)
        self.honour_idempotency = False
        #: reject safety_tolerance above this when an input image is given (None: accept 0-6)
        self.max_safety_with_image: int | None = None
        self._default_script = Script()
        self._scripts: list[Script] = []
        self._faults: list[Fault] = []
        self._idem: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._offset = 0.0
        self._down = False
        self._port = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeApimart not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/images/generations", self._submit)
        app.router.add_post("/v1/uploads/images", self._upload)
        app.router.add_get("/v1/tasks/{task_id}", self._task)
        app.router.add_get("/results/{name}", self._result)
        app.router.add_get("/f/image/{name}", self._file)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        self._session = aiohttp.ClientSession()
        await self._listen(0)

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await self._site.start()
        self._port = self._site.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> FakeApimart:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def set_down(self, down: bool) -> None:
        """Down: close the listening socket and open connections (clients get connection refused)."""
        if down == self._down:
            return
        self._down = down
        assert self._runner is not None
        if down:
            assert self._site is not None
            await self._site.stop()
            self._site = None
            server = self._runner.server
            if server is not None:
                for handler in server.connections:
                    handler.force_close()
        else:
            await self._listen(self._port)

    # --- scripting ------------------------------------------------------------------------------

    def script(
        self,
        duration: float = 0.3,
        progress_steps: tuple[int, ...] | list[int] | None = (10, 30, 50, 70, 90),
        estimated_time: Any = AUTO,
        fail_reason: str | None = None,
        never_finish: bool = False,
        submit_shape: SubmitShape = "list",
        url_shape: UrlShape = "list",
        status_names: Mapping[str, str] | None = None,
        *,
        queue_fraction: float = 0.2,
        fail_shape: FailShape = "object",
        list_while_queued: bool = False,
        result: Callable[[bytes], bytes] | None = None,
        persist: bool = False,
    ) -> Script:
        """Script the next submission (queued in order), or every later one with ``persist=True``."""
        script = Script(
            duration=duration,
            progress_steps=tuple(progress_steps) if progress_steps is not None else None,
            estimated_time=estimated_time,
            queue_fraction=queue_fraction,
            fail_reason=fail_reason,
            fail_shape=fail_shape,
            never_finish=never_finish,
            submit_shape=submit_shape,
            url_shape=url_shape,
            status_names=dict(status_names or {}),
            list_while_queued=list_while_queued,
            result=result,
        )
        if persist:
            self._default_script = script
        else:
            self._scripts.append(script)
        return script

    def fail_next(
        self,
        endpoint: Endpoint,
        status: int = 500,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
        times: int = 1,
        delay: float = 0.0,
        disconnect: bool = False,
    ) -> None:
        """The next ``times`` requests to ``endpoint`` get this reply instead of the real one.

        ``body`` (JSON) or ``raw`` (bytes as-is, e.g. broken JSON or HTML; content type from
        ``headers`` or text/html) or, by default, ``{"error": {"message": "fake error <status>"…}}``.
        ``delay`` waits first (longer than the client timeout = a slow response);
        ``disconnect=True`` drops the connection without answering (after ``delay``).
        For ``submit`` the request is still recorded in ``submissions`` but no task is created.
        """
        self._add_fault(
            Fault(endpoint, status, body, headers, raw, times=times, delay=delay, disconnect=disconnect)
        )

    def slow_next(self, endpoint: Endpoint, delay: float, *, times: int = 1) -> None:
        """Handle the next request normally (a submit creates its task) but answer after ``delay``."""
        self._add_fault(Fault(endpoint, 200, times=times, delay=delay, passthrough=True))

    def result_fault(
        self,
        kind: ResultFaultKind,
        *,
        times: int = 1,
        size: int = 60 * 1024 * 1024,
        location: str | None = None,
        declare_length: bool = False,
    ) -> None:
        """Break the next result download(s).

        ``404``; ``redirect`` (302 to ``location``, by default the same result on host
        ``localhost`` instead of ``127.0.0.1``, i.e. another host that still serves the image);
        ``html`` (200 text/html page); ``oversize`` (200 image/png streaming ``size`` bytes, with
        a Content-Length only if ``declare_length``).
        """
        if kind == "404":
            self._add_fault(
                Fault("result", 404, raw=b"Not Found", headers={"Content-Type": "text/plain"}, times=times)
            )
        elif kind == "html":
            page = b"<!DOCTYPE html><html><body><h1>Login required</h1></body></html>"
            self._add_fault(
                Fault("result", 200, raw=page, headers={"Content-Type": "text/html"}, times=times)
            )
        elif kind == "redirect":
            self._add_fault(Fault("result", 302, times=times, kind="redirect", location=location))
        elif kind == "oversize":
            headers = {"Content-Length": str(size)} if declare_length else None
            self._add_fault(Fault("result", 200, times=times, kind="oversize", size=size, headers=headers))
        else:  # pragma: no cover
            raise ValueError(kind)

    def _add_fault(self, fault: Fault) -> None:
        if fault.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {fault.endpoint!r}; one of {ENDPOINTS}")
        self._faults.append(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def advance(self, seconds: float) -> None:
        """Jump the fake's task clock forward (tasks progress as if ``seconds`` had passed)."""
        self._offset += seconds

    def host(self, data: bytes, content_type: str = "image/png", name: str | None = None) -> str:
        """Serve ``data`` at a public URL on the fake (like an image host); returns the URL."""
        name = name or f"hosted-{next(self._ids)}"
        self.files[name] = (data, content_type)
        return f"{self.base_url}/f/image/{name}"

    def result_bytes(self, task_id: str) -> bytes:
        return self.results[self.tasks[task_id].result_name][0]

    @staticmethod
    def colour_for(prompt: str) -> tuple[int, int, int]:
        """The solid colour of a text-to-image result for ``prompt``."""
        digest = hashlib.sha256(prompt.encode()).digest()
        return digest[0], digest[1], digest[2]

    # --- plumbing -------------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time() + self._offset

    def _take_fault(self, endpoint: str) -> Fault | None:
        for fault in self._faults:
            if fault.endpoint == endpoint and fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _endpoint(path: str) -> str:
        if path == "/v1/images/generations":
            return "submit"
        if path == "/v1/uploads/images":
            return "upload"
        if path.startswith("/v1/tasks/"):
            return "task"
        if path.startswith("/results/"):
            return "result"
        if path.startswith("/f/"):
            return "file"
        return "other"

    @staticmethod
    def _error(
        status: int, message: str, *, param: str | None = None, kind: str | None = None
    ) -> web.Response:
        error: dict[str, Any] = {"message": message, "type": kind or "invalid_request_error", "code": status}
        if param:
            error["param"] = param
        return web.json_response({"error": error}, status=status)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = self._endpoint(request.path)
        await self._record(request, endpoint)
        fault = self._take_fault(endpoint)
        if fault is None:
            return await self._handle(request, handler)
        if fault.passthrough:
            response = await self._handle(request, handler)
            await asyncio.sleep(fault.delay)
            return response
        return await self._fault_response(request, fault)

    async def _record(self, request: web.Request, endpoint: str) -> None:
        """Record the request (and a submission's body, or a poll) before anything can fail it."""
        body = await request.read() if endpoint == "submit" else None
        self.requests.append(
            RecordedRequest(
                endpoint=endpoint,
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=body,
                at=asyncio.get_running_loop().time(),
            )
        )
        if endpoint == "submit":
            try:
                parsed: Any = json.loads(body or b"")
            except ValueError:
                parsed = None
            submission = Submission(
                json=parsed,
                headers=dict(request.headers),
                idempotency_key=request.headers.get("Idempotency-Key"),
            )
            self.submissions.append(submission)
            request[_SUBMISSION] = submission
        if endpoint == "task":
            self.polls[request.match_info.get("task_id", request.path.rsplit("/", 1)[-1])] += 1

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        """What a scripted (not passthrough) fault answers instead of the endpoint, after its delay."""
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.disconnect:
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError  # nothing is sent back
        if fault.kind == "redirect":
            location = fault.location or f"http://localhost:{self._port}{request.path_qs}"
            return web.Response(status=fault.status, headers={"Location": location})
        if fault.kind == "oversize":
            return await self._stream_oversize(request, fault)
        response = self._canned_error(fault)
        if _SUBMISSION in request:
            request[_SUBMISSION].status = fault.status
        return response

    @staticmethod
    def _canned_error(fault: Fault) -> web.Response:
        """The fault's raw bytes (HTML by default), its JSON body, or APIMart's error shape."""
        headers = dict(fault.headers or {})
        if fault.raw is not None:
            headers.setdefault("Content-Type", "text/html")
            return web.Response(status=fault.status, body=fault.raw, headers=headers)
        payload = fault.body
        if payload is None:
            payload = {
                "error": {
                    "message": f"fake error {fault.status}",
                    "type": "fake_error",
                    "code": fault.status,
                }
            }
        return web.json_response(payload, status=fault.status, headers=headers)

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if _SUBMISSION in request and request[_SUBMISSION].status is None:
            request[_SUBMISSION].status = response.status
        return response

    async def _stream_oversize(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "image/png", **(fault.headers or {})}
        )
        await response.prepare(request)
        chunk = b"\x89PNG\r\n\x1a\n" + bytes(65536 - 8)
        sent = 0
        try:
            while sent < fault.size:
                piece = chunk[: fault.size - sent]
                await response.write(piece)
                sent += len(piece)
                chunk = bytes(65536)
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass
        return response

    def _authorised(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if header == f"Bearer {self.api_key}":
            return None
        given = header.removeprefix("Bearer ").strip()
        message = f"Incorrect API key provided: {given}" if given else "Missing API key"
        return self._error(401, message, kind="authentication_error")

    # --- submit ---------------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.Response:
        submission: Submission = request[_SUBMISSION]
        denied = self._authorised(request)
        if denied is not None:
            submission.error = "auth"
            return denied
        body = submission.json
        problem = self._validate(body)
        if problem is not None:
            message, param = problem
            submission.error = message
            return self._error(400, message, param=param)
        key = submission.idempotency_key
        if self.honour_idempotency and key and key in self._idem:
            task = self.tasks[self._idem[key]]
            submission.task_id = task.id
            return web.json_response(self._submit_reply(task), headers={"idempotency-replayed": "true"})
        script = self._scripts.pop(0) if self._scripts else self._default_script
        image_urls = body.get("image_urls") or []
        fmt = body.get("response_format", "png")
        if image_urls:
            try:
                source = await self._download(image_urls[0])
                result = await asyncio.to_thread(_invert, source, fmt)
            except _Unreachable as exc:
                submission.error = str(exc)
                return self._error(400, f"image url unreachable or not an image: {exc}", param="image_urls")
        else:
            size = body.get("size", "16:9")
            result = await asyncio.to_thread(_solid, self.colour_for(body["prompt"]), size, fmt)
        if script.result is not None:
            result = await asyncio.to_thread(script.result, result)
        task_id = f"task_01FAKE{next(self._ids):020d}"
        ext = "jpg" if fmt == "jpg" else "png"
        name = f"{task_id}.{ext}"
        self.results[name] = (result, "image/jpeg" if ext == "jpg" else "image/png")
        task = FakeTask(
            id=task_id,
            created=self._now(),
            created_unix=int(time.time()),
            script=script,
            request=body,
            result_name=name,
            result_url=f"{self.base_url}/results/{name}",
            input_url=image_urls[0] if image_urls else None,
        )
        self.tasks[task_id] = task
        if key:
            self._idem.setdefault(key, task_id)
        submission.task_id = task_id
        return web.json_response(self._submit_reply(task))

    @staticmethod
    def _submit_reply(task: FakeTask) -> dict[str, Any]:
        if task.script.submit_shape == "object":
            return {
                "code": 200,
                "data": {
                    "id": task.id,
                    "status": "pending",
                    "progress": 0,
                    "task_info": {"can_cancel": False, "estimated_time": _estimate(task.script)},
                },
            }
        return {"code": 200, "data": [{"status": "submitted", "task_id": task.id}]}

    def _validate(self, body: Any) -> tuple[str, str | None] | None:
        """The first problem with a submission's body as (message, param), or None."""
        if not isinstance(body, dict):
            return "request body must be a JSON object", None
        if body.get("model") not in MODELS:
            return f"model must be one of {', '.join(MODELS)}", "model"
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return "prompt is required", "prompt"
        urls = body.get("image_urls")
        if urls is not None and (problem := self._validate_image_urls(urls)):
            return problem
        if "size" in body and body["size"] not in SIZES:
            return f"size must be one of {', '.join(SIZES)}", "size"
        if "response_format" in body and body["response_format"] not in FORMATS:
            return "response_format must be png or jpg", "response_format"
        if "safety_tolerance" in body and (
            problem := self._validate_safety(body["safety_tolerance"], with_image=bool(urls))
        ):
            return problem
        if "prompt_upsampling" in body and not isinstance(body["prompt_upsampling"], bool):
            return "prompt_upsampling must be a boolean", "prompt_upsampling"
        return None

    @staticmethod
    def _validate_image_urls(urls: Any) -> tuple[str, str | None] | None:
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            return "image_urls must be a list of URLs", "image_urls"
        if len(urls) > 1:
            return "at most 1 image URL is supported", "image_urls"
        if urls and not re.match(r"^https?://", urls[0]):
            return "image_urls must be public http(s) URLs (base64 is not accepted)", "image_urls"
        return None

    def _validate_safety(self, value: Any, *, with_image: bool) -> tuple[str, str | None] | None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 6:
            return "safety_tolerance must be an integer between 0 and 6", "safety_tolerance"
        cap = self.max_safety_with_image
        if cap is not None and with_image and value > cap:
            return f"safety_tolerance must be at most {cap} when an input image is given", "safety_tolerance"
        return None

    async def _download(self, url: str) -> bytes:
        assert self._session is not None
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status != 200:
                    raise _Unreachable(f"HTTP {resp.status}")
                data = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    data += chunk
                    if len(data) > MAX_INPUT_BYTES:
                        raise _Unreachable("image too large")
                return bytes(data)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise _Unreachable(type(exc).__name__) from None

    # --- upload ---------------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        denied = self._authorised(request)
        if denied is not None:
            self.uploads.append(UploadRecord(None, None, 0, 401))
            return denied
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError):
            self.uploads.append(UploadRecord(None, None, 0, 400))
            return self._error(400, "multipart form with a file field is required", param="file")
        filename, content_type, data = await self._read_file_field(reader)
        if data is not None and len(data) > MAX_UPLOAD_BYTES:
            self.uploads.append(UploadRecord(filename, content_type, len(data), 413))
            return self._error(413, "file too large (max 20 MB)", param="file")
        if data is None:
            self.uploads.append(UploadRecord(filename, content_type, 0, 400))
            return self._error(400, "missing file field", param="file")
        kind = _sniff(data)
        if kind is None:
            self.uploads.append(UploadRecord(filename, content_type, len(data), 400))
            return self._error(400, "unsupported format (JPEG, PNG, WebP or GIF)", param="file")
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename or f"upload.{kind}")[:80]
        name = f"{int(time.time() * 1000)}{next(self._ids):04d}-{hashlib.sha1(data).hexdigest()[:8]}-{safe}"
        mime = f"image/{kind}"
        self.files[name] = (data, mime)
        url = f"{self.base_url}/f/image/{name}"
        self.uploads.append(UploadRecord(filename, content_type, len(data), 200, url=url, data=data))
        return web.json_response(
            {
                "url": url,
                "filename": filename,
                "content_type": mime,
                "bytes": len(data),
                "created_at": int(time.time()),
            }
        )

    @staticmethod
    async def _read_file_field(
        reader: aiohttp.MultipartReader,
    ) -> tuple[str | None, str | None, bytes | None]:
        """The ``file`` field's filename, Content-Type and bytes (None without such a field).

        Reading stops as soon as the bytes exceed ``MAX_UPLOAD_BYTES`` (the caller refuses them)."""
        filename: str | None = None
        content_type: str | None = None
        data: bytes | None = None
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader):
                continue
            if part.name != "file":
                await part.release()
                continue
            filename = part.filename
            content_type = part.headers.get("Content-Type")
            buffer = bytearray()
            while chunk := await part.read_chunk(65536):
                buffer += chunk
                if len(buffer) > MAX_UPLOAD_BYTES:
                    return filename, content_type, bytes(buffer)
            data = bytes(buffer)
        return filename, content_type, data

    async def _file(self, request: web.Request) -> web.Response:
        item = self.files.get(request.match_info["name"])
        if item is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=item[0], content_type=item[1])

    async def _result(self, request: web.Request) -> web.Response:
        item = self.results.get(request.match_info["name"])
        if item is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=item[0], content_type=item[1])

    # --- task -----------------------------------------------------------------------------------

    async def _task(self, request: web.Request) -> web.Response:
        denied = self._authorised(request)
        if denied is not None:
            return denied
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return self._error(404, "task not found", kind="not_found_error")
        return web.json_response({"code": 200, "data": self.task_data(task)})

    def task_data(self, task: FakeTask) -> Any:
        """The ``data`` member of ``GET /v1/tasks/{id}`` right now."""
        script = task.script
        elapsed = self._now() - task.created
        data: dict[str, Any] = {"id": task.id, "created": task.created_unix}
        estimate = _estimate(script)
        if estimate is not None:
            data["estimated_time"] = estimate
        queue_end = script.duration * script.queue_fraction
        if script.never_finish or elapsed < script.duration:
            if elapsed < queue_end:
                data["status"] = script.name("queued")
                if script.progress_steps is not None:
                    data["progress"] = 0
                return [data] if script.list_while_queued else data
            data["status"] = script.name("running")
            steps = script.progress_steps
            if steps:
                share = (elapsed - queue_end) / max(script.duration - queue_end, 1e-9)
                data["progress"] = steps[min(len(steps) - 1, int(share * len(steps)))]
            return data
        finished_unix = task.created_unix + round(script.duration)
        if script.fail_reason is not None:
            data["status"] = script.name("failed")
            if script.fail_shape == "object":
                data["error"] = {"message": script.fail_reason, "type": "task_failed"}
            elif script.fail_shape == "string":
                data["error"] = script.fail_reason
            else:
                data["fail_reason"] = script.fail_reason
            return data
        expires = int(time.time()) + 86400
        url: Any = [task.result_url] if script.url_shape == "list" else task.result_url
        data.update(
            status=script.name("completed"),
            progress=100,
            completed=finished_unix,
            actual_time=round(script.duration, 3),
            result={"images": [{"url": url, "expires_at": expires}]},
        )
        return data


class _Unreachable(Exception):
    pass


def _estimate(script: Script) -> float | None:
    if script.estimated_time is AUTO:
        return round(script.duration, 3)
    if script.estimated_time is None:
        return None
    return float(script.estimated_time)


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "jpg":
        image.convert("RGB").save(out, "JPEG", quality=95)
    else:
        image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _invert(data: bytes, fmt: str) -> bytes:
    """The fake's "edit": colours inverted, alpha and dimensions kept."""
    try:
        with Image.open(io.BytesIO(data)) as source:
            source.load()
            has_alpha = source.mode in ("RGBA", "LA", "PA") or "transparency" in source.info
            image = source.convert("RGBA" if has_alpha else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _Unreachable(f"cannot decode ({type(exc).__name__})") from None
    if has_alpha:
        r, g, b, a = image.split()
        inverted = ImageOps.invert(Image.merge("RGB", (r, g, b)))
        image = Image.merge("RGBA", (*inverted.split(), a))
    else:
        image = ImageOps.invert(image)
    return _encode(image, fmt)


def _solid(colour: tuple[int, int, int], size: str, fmt: str) -> bytes:
    """Text-to-image: a solid colour in the requested aspect, long side T2I_LONG_SIDE."""
    ratio = "1:1" if size in ("auto", "match_input_image") else size
    w_ratio, h_ratio = (int(x) for x in ratio.split(":"))
    if w_ratio >= h_ratio:
        width, height = T2I_LONG_SIDE, max(1, round(T2I_LONG_SIDE * h_ratio / w_ratio))
    else:
        width, height = max(1, round(T2I_LONG_SIDE * w_ratio / h_ratio)), T2I_LONG_SIDE
    return _encode(Image.new("RGB", (width, height), colour), fmt)
