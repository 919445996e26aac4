# syntax=docker/dockerfile:1
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    WEB_PORT=8080

WORKDIR /app

RUN useradd --create-home --uid 10001 kontext \
    && mkdir -p /data \
    && chown kontext:kontext /data

COPY pyproject.toml README.md ./
COPY bot.py ./
COPY kontext ./kontext
COPY cogs ./cogs
# versions are bounded in pyproject.toml; the heic extra adds HEIC/HEIF input support (iPhone photos)
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[heic]"

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WEB_PORT', '8080'), timeout=4).status == 200 else 1)"]

STOPSIGNAL SIGTERM
CMD ["python", "bot.py"]
