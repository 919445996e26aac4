"""APIMart reply parsing: submit replies and task statuses, tolerant of every shape we know.

Unknown statuses and unusable shapes become typed errors (never a crash); see the repository's
``docs/ARCHITECTURE.md`` for the documented and observed shapes.
"""

from __future__ import annotations

from typing import Any

from kontext.adapters.apimart.errors import raise_body_error
from kontext.domain.errors import ApiMalformed, UnknownTaskStatus
from kontext.domain.generation import GenerationRequest, TaskState, TaskStatus
from kontext.domain.values import clip, finite_number

__all__ = ["normalise_status", "parse_submit_response", "parse_task", "request_body", "shape"]

MAX_REASON_CHARS = 300

_STATES: dict[str, TaskState] = {
    **dict.fromkeys(("pending", "submitted", "queued", "queuing", "waiting", "created"), TaskState.QUEUED),
    **dict.fromkeys(("processing", "in_progress", "running", "generating", "started"), TaskState.RUNNING),
    **dict.fromkeys(("completed", "succeeded", "success"), TaskState.COMPLETED),
    # cancelled is a failure from the user's point of view
    **dict.fromkeys(("failed", "failure", "error", "cancelled", "canceled"), TaskState.FAILED),
}


def request_body(request: GenerationRequest) -> dict[str, Any]:
    """The JSON body of ``POST /v1/images/generations`` (``image_urls`` omitted for text-to-image)."""
    body: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
    if request.image_url is not None:
        body["image_urls"] = [request.image_url]
    body["size"] = request.size
    body["response_format"] = request.response_format
    body["safety_tolerance"] = int(request.safety_tolerance)
    body["prompt_upsampling"] = bool(request.prompt_upsampling)
    return body


def shape(value: Any, depth: int = 0) -> str:
    """A short description of a JSON value's shape for logs (no values, so no secrets)."""
    if depth > 2:
        return "…"
    if isinstance(value, dict):
        inner = ", ".join(f"{str(k)[:20]}: {shape(v, depth + 1)}" for k, v in list(value.items())[:8])
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + (shape(value[0], depth + 1) if value else "") + "]"
    return type(value).__name__


def parse_submit_response(body: Any) -> str:
    """The task id from a submit reply: ``data[0].task_id`` (documented) or ``data.id`` (newer)."""
    if not isinstance(body, dict):
        raise ApiMalformed("submit reply is not a JSON object")
    raise_body_error(body)
    data = body.get("data")
    if isinstance(data, list):
        data = data[0] if data else None
    if isinstance(data, dict):
        for key in ("task_id", "id"):
            value = data.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if isinstance(value, str) and value.strip():
                return value.strip()
    raise ApiMalformed("submit reply has no task id", shape=shape(body))


def parse_upload_response(body: Any) -> str:
    """The public URL from an upload reply (``url``, or ``data.url``)."""
    url = body.get("url") if isinstance(body, dict) else None
    if url is None and isinstance(body, dict) and isinstance(body.get("data"), dict):
        url = body["data"].get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ApiMalformed("upload reply has no URL", shape=shape(body))
    return url


def normalise_status(raw: str) -> TaskState | None:
    """The normalised state for a raw APIMart status, None if unknown."""
    return _STATES.get(raw.strip().lower().replace("-", "_").replace(" ", "_"))


def _urls(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.strip()
        return [value] if value.startswith(("https://", "http://")) else []
    if isinstance(value, list):
        return [u for item in value if isinstance(item, str) for u in _urls(item)]
    return []


def _image_entries(result: Any) -> tuple[list[Any], list[str], float | None]:
    """(image entries, URLs found directly on the result, expiry on the result) of a ``result``."""
    if isinstance(result, dict):
        images = result.get("images")
        if images is None:
            images = result.get("data")
        urls = [u for key in ("url", "urls", "image_url", "image_urls") for u in _urls(result.get(key))]
        entries = [images] if isinstance(images, dict) else images if isinstance(images, list) else []
        return entries, urls, finite_number(result.get("expires_at"))
    if isinstance(result, list):
        return result, [], None
    if isinstance(result, str):
        return [], _urls(result), None
    return [], [], None


def _result(data: dict[str, Any]) -> tuple[tuple[str, ...], float | None]:
    entries, urls, expires = _image_entries(data.get("result"))
    for image in entries:
        if isinstance(image, dict):
            found = _urls(image.get("url")) or _urls(image.get("urls"))
            urls += found
            if found and expires is None:
                expires = finite_number(image.get("expires_at"))
        else:
            urls += _urls(image)
    if expires is None:
        expires = finite_number(data.get("expires_at"))
    return tuple(dict.fromkeys(urls)), expires


def _failure_reason(data: dict[str, Any]) -> str:
    candidates: list[Any] = []
    error = data.get("error")
    if isinstance(error, dict):
        candidates += [error.get("message"), error.get("msg"), error.get("reason"), error.get("type")]
        if isinstance(error.get("code"), str):
            candidates.append(error.get("code"))
    else:
        candidates.append(error)
    candidates += [data.get(k) for k in ("fail_reason", "failure_reason", "message", "reason")]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return clip(candidate.strip(), MAX_REASON_CHARS, squash=True)
    return "no reason given"


def _task_data(body: Any, task_id: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiMalformed("task reply is not a JSON object", task_id=task_id)
    raise_body_error(body)
    data: Any = body.get("data") if "data" in body else body
    if isinstance(data, list):  # early status sometimes comes as a one-element list
        data = data[0] if data else None
    if not isinstance(data, dict):
        raise ApiMalformed("task reply has no data object", task_id=task_id, shape=shape(body))
    return data


def _raw_status(data: dict[str, Any], body: Any, task_id: str) -> tuple[str, TaskState]:
    raw = data.get("status")
    if raw is None:
        raw = data.get("state")
    if not isinstance(raw, str) or not raw.strip():
        raise ApiMalformed("task reply has no status", task_id=task_id, shape=shape(body))
    raw_status = clip(raw.strip(), 60, squash=True)
    state = normalise_status(raw_status)
    if state is None:
        unknown = UnknownTaskStatus(
            f"task {task_id} has unknown status {raw_status!r}", task_id=task_id, status_name=raw_status
        )
        unknown.params["status"] = raw_status  # for the user message; ``.status`` stays the HTTP status
        raise unknown
    return raw_status, state


def parse_task(body: Any, task_id: str) -> TaskStatus:
    """Parse ``GET /v1/tasks/{id}`` tolerantly.

    Unknown status → :class:`UnknownTaskStatus`; unusable shape → :class:`ApiMalformed`; a body
    carrying an error ``code`` → the classified error.
    """
    data = _task_data(body, task_id)
    raw_status, state = _raw_status(data, body, task_id)
    reported_id = data.get("id") or data.get("task_id")
    tid = reported_id.strip() if isinstance(reported_id, str) and reported_id.strip() else task_id
    progress_value = finite_number(data.get("progress"))
    progress = None if progress_value is None else int(min(100.0, max(0.0, progress_value)))
    estimate = finite_number(data.get("estimated_time"))
    urls, expires_at = _result(data) if state is TaskState.COMPLETED else ((), None)
    return TaskStatus(
        task_id=tid,
        state=state,
        raw_status=raw_status,
        progress=progress,
        estimated_time=estimate if estimate is not None and estimate >= 0 else None,
        result_urls=urls,
        error=_failure_reason(data) if state is TaskState.FAILED else None,
        expires_at=expires_at,
    )
