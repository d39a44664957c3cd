# One image for every role: worker, recorder, exporter, flower (and serve, later).
# Build from the repo root:  docker build -t coditect-tasks:0.1.0 .
# Roles are subcommands:     docker run coditect-tasks:0.1.0 worker --agents echo,emit
# Configuration is only CODITECT_* environment variables; nothing secret is baked in.

# Build stage: the wheels are resolved against constraints.txt, the versions the tests passed with.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY coditect_tasks ./coditect_tasks
COPY workers ./workers
# A non-editable install without the dev extra; postgres for the run history.
RUN python -m venv /opt/coditect \
    && /opt/coditect/bin/pip install -c constraints.txt '.[postgres]'

# Runtime stage: the same base, so the venv's interpreter path resolves; no build context, no pip cache.
FROM python:3.11-slim
ENV PATH=/opt/coditect/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CODITECT_HOME=/var/lib/coditect \
    CODITECT_HEALTH_FILE=/tmp/coditect-health.json
# A numeric UID, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 coditect \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/coditect --no-create-home coditect \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/coditect
COPY --from=build /opt/coditect /opt/coditect
USER 10001:10001
WORKDIR /var/lib/coditect
# Every role (worker, recorder, scheduler, serve, exporter, flower) rewrites the health file each
# second; the check reads it, never the broker. Workers also say whether they take work (--ready).
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 CMD ["coditect-tasks", "health"]
ENTRYPOINT ["coditect-tasks"]
CMD ["--help"]
