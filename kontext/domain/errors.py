"""Typed errors: each one carries a message code (see :mod:`kontext.i18n`) and safe parameters.

Every failure that can reach a user is a :class:`KontextError`. ``code`` picks the user-facing
sentence, ``params`` fill it in, ``str(error)`` is the operator's log detail. Nothing in here may
ever hold a secret (API key, bot token, interaction token).
"""

from __future__ import annotations

from typing import Any


class KontextError(Exception):
    """Base class of every expected failure; ``code`` selects the user message."""

    code: str = "internal"
    #: True when only the requester should see the message (ephemeral where possible).
    private: bool = True
    #: True when repeating the same (idempotent) request later may succeed.
    retryable: bool = False

    def __init__(self, detail: str = "", **params: Any) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code
        self.params: dict[str, Any] = params


# --- input images -------------------------------------------------------------------------------


class ImageError(KontextError):
    """The user's input image cannot be used."""

    code = "image_error"


class ImageTooLarge(ImageError):
    """File bigger than the limit (params: size_mb, limit_mb)."""

    code = "image_too_large"


class ImageTooLargeUnknownSize(ImageTooLarge):
    """A download passed the limit before its size was known (params: limit_mb)."""

    code = "image_too_large_unknown_size"


class NotAnImage(ImageError):
    """Not a supported image format (params: kind)."""

    code = "image_not_image"


class BrokenImage(ImageError):
    """Looks like an image but cannot be decoded (truncated, corrupt)."""

    code = "image_broken"


class ImageBomb(ImageError):
    """Declares more pixels than allowed (params: megapixels, limit_mp)."""

    code = "image_bomb"


class ImageBadShape(ImageError):
    """Aspect ratio or dimensions outside what the model can work with (params: width, height)."""

    code = "image_bad_shape"


class ImageStructure(ImageError):
    """The file's structure is absurd (far more scans, markers, chunks or blocks than any camera or
    editor writes); refused before decoding (params: none, the detail names the count and the limit)."""

    code = "image_structure"


class ImageTooSlow(ImageError):
    """Reading the image overran the sandbox's time or CPU limit; the worker was killed."""

    code = "image_too_slow"


class ImageTooHeavy(ImageError):
    """Reading the image needed more memory than the sandbox allows; the worker was stopped."""

    code = "image_too_heavy"


class InputGone(ImageError):
    """A re-roll's input is no longer kept and its link has gone too."""

    code = "job_gone"


class ImageDownloadFailed(ImageError):
    """The attachment could not be downloaded from Discord's CDN."""

    code = "image_download_failed"
    retryable = True


# --- APIMart ------------------------------------------------------------------------------------


class ApiError(KontextError):
    """A failure talking to APIMart (params: status, message)."""

    code = "api_error"
    private = False

    def __init__(self, detail: str = "", *, status: int | None = None, **params: Any) -> None:
        super().__init__(detail, status=status, **params)
        self.status = status


class ApiAuthError(ApiError):
    """401: the operator's API key is invalid or expired."""

    code = "api_auth"


class ApiBalanceError(ApiError):
    """402/403: insufficient balance or no permission for the model."""

    code = "api_balance"


class ApiRateLimited(ApiError):
    """429: rate limited (params: retry_after seconds or None)."""

    code = "api_rate_limited"
    retryable = True

    def __init__(self, detail: str = "", *, retry_after: float | None = None, **params: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **params)
        self.retry_after = retry_after


class ApiBadRequest(ApiError):
    """400/404/422: the API rejected the parameters (params: message)."""

    code = "api_bad_request"


class ApiServerError(ApiError):
    """5xx / 408: the API failed on its side."""

    code = "api_server"
    retryable = True


class ApiUnavailable(ApiError):
    """The API could not be reached at all (connection refused, DNS, timeout)."""

    code = "api_unavailable"
    retryable = True


class ApiMalformed(ApiError):
    """The API answered with something we cannot parse."""

    code = "api_malformed"


class ApiSubmitUncertain(ApiError):
    """A submission may or may not have reached the API; never retried (we could pay twice)."""

    code = "api_submit_uncertain"


class TaskFailed(ApiError):
    """The task ended failed/cancelled (params: reason), e.g. a moderation refusal."""

    code = "task_failed"
    private = False


class UnknownTaskStatus(ApiError):
    """The task reported a status we do not know (params: status)."""

    code = "task_unknown_status"


class TaskTimedOut(KontextError):
    """The job passed its overall deadline (params: seconds)."""

    code = "task_timeout"
    private = False


# --- hosting and results ------------------------------------------------------------------------


class HostingError(KontextError):
    """The normalised input could not be put on the image host."""

    code = "host_failed"
    private = False


class ResultError(KontextError):
    """The result image could not be downloaded or is unusable (params: reason)."""

    code = "result_failed"
    private = False


class ResultTooLarge(ResultError):
    """The result could not be made small enough for the channel's upload limit."""

    code = "result_too_large"


class DeliveryError(KontextError):
    """The result could not be posted to Discord (channel gone, missing permission)."""

    code = "delivery_failed"
    private = False


class JobInterrupted(KontextError):
    """The bot stopped while the job was being submitted; it is never submitted twice."""

    code = "job_interrupted"
    private = False


class ShuttingDown(KontextError):
    """The bot is shutting down and accepts no new jobs."""

    code = "shutting_down"


class BusyError(KontextError):
    """Too many jobs are waiting (params: limit)."""

    code = "busy"


def error_codes() -> frozenset[str]:
    """Every message code a :class:`KontextError` can carry (the bounded set of failure reasons)."""
    codes, todo = set(), [KontextError]
    while todo:
        cls = todo.pop()
        codes.add(cls.code)
        todo += cls.__subclasses__()
    return frozenset(codes)
