"""Structured logging: every line of a job carries its id; known secrets are scrubbed from every line."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

current_job: contextvars.ContextVar[str] = contextvars.ContextVar("kontext_job", default="-")


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tag every log line emitted inside the block (and tasks it starts) with ``job_id``."""
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)


class JobFilter(logging.Filter):
    """Adds ``record.job`` from the context and replaces secrets with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job"):
            record.job = current_job.get()
        if self.secrets:
            message = record.getMessage()
            scrubbed = message
            for secret in self.secrets:
                scrubbed = scrubbed.replace(secret, "[redacted]")
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
            if record.exc_info and record.exc_info[1] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                for secret in self.secrets:
                    if secret in text:
                        record.exc_info = None
                        record.exc_text = text.replace(secret, "[redacted]")
                        break
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (for log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "job": getattr(record, "job", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exc"] = record.exc_text
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(level: str = "INFO", *, json_lines: bool = False, secrets: Iterable[str] = ()) -> None:
    """Configure the root logger once: job-tagged lines on stderr, secrets scrubbed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobFilter(secrets))
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [job=%(job)s] %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("discord").setLevel(max(logging.INFO, logging.getLevelName(level)))
