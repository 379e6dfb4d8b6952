# syntax=docker/dockerfile:1
#
# One image for every Amana service. The service and its role are chosen by CMD:
#
#   docker run amana registry api        # FastAPI app (uvicorn) on $REGISTRY_PORT (8000)
#   docker run amana registry worker     # outbox relay + Kafka consumers, no port
#   docker run amana registry migrate    # alembic upgrade head, then exits
#   docker run amana amana_common.topics --bootstrap kafka:9092
#
# The workspace lives at /app (members installed editable into /app/.venv), so each
# service's alembic.ini and migrations/ are at /app/services/<name>/ at run time, and the
# service catalog (the gateway's default routes, the topics) at /app/services/catalog.toml.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------
# manifests: only the files that decide the dependency set (pyproject.toml files and
# uv.lock), so the dependency layer below stays cached while source code changes.
# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS manifests
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY contracts contracts
COPY services services
RUN find . -type f ! -name pyproject.toml ! -name uv.lock -delete \
 && find . -depth -type d -empty -delete

# ---------------------------------------------------------------------------------------
# builder: uv from PyPI (pinned), third-party dependencies first, then the workspace.
# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_FROZEN=1

WORKDIR /app

# 1. Third-party dependencies only (cached until a pyproject.toml or uv.lock changes).
COPY --from=manifests /src/ /app/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --no-install-workspace

# 2. The workspace itself: libs/common, contracts, services/catalog.toml and every
#    services/<name>. Only these paths: a bare `COPY . /app/` would also copy the host's
#    .venv over /app/.venv, and .local/ (local PostgreSQL and Kafka data) and .git into the
#    image.
COPY pyproject.toml uv.lock /app/
COPY libs /app/libs
COPY contracts /app/contracts
COPY services /app/services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages \
 && python -m compileall -q -j 0 /app/libs /app/contracts /app/services \
 && /app/.venv/bin/python -c "import amana_common, amana_contracts" \
 && AMANA_CATALOG=/app/services/catalog.toml /app/.venv/bin/python -m amana_common.catalog services

# ---------------------------------------------------------------------------------------
# runtime: no uv, no build tools; files owned by root and read-only for the app user.
# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG APP_UID=10001
RUN groupadd --system --gid ${APP_UID} amana \
 && useradd --system --uid ${APP_UID} --gid ${APP_UID} --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin amana

ENV PATH=/app/.venv/bin:${PATH} \
    VIRTUAL_ENV=/app/.venv \
    AMANA_CATALOG=/app/services/catalog.toml \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1

WORKDIR /app
COPY --from=builder /app /app

LABEL org.opencontainers.image.title="amana" \
      org.opencontainers.image.description="Amana social-protection cash transfer services" \
      org.opencontainers.image.source="https://github.com/amana/amana"

# Numeric user so Kubernetes can verify runAsNonRoot.
USER ${APP_UID}:${APP_UID}
EXPOSE 8000

ENTRYPOINT ["python", "-m"]
CMD ["registry", "api"]
