# syntax=docker/dockerfile:1
# One image for every smsmesh role: `smsmesh operator`, `smsmesh router`, `smsmesh connector`
# (started by the operator), `smsmesh simulate`. Build:  docker build -t smsmesh:dev .
#
# Two stages: the builder turns the project and its dependencies into wheels (it may need a
# compiler for packages without a wheel for this platform); the runtime stage installs only
# those wheels into a clean python:3.11-slim, so no build tools, caches or sources remain.
# Nothing secret is baked in: the store URL and SMPP credentials come from Kubernetes Secrets.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the package build reads (.dockerignore keeps everything else out of the context).
COPY pyproject.toml README.md ./
COPY smsmesh/ smsmesh/
COPY router/ router/
COPY connector/ connector/
COPY operator/ operator/
# Optional dependency groups of pyproject.toml to add, comma-separated (none by default:
# every role's dependencies are the project's own).
ARG EXTRAS=""
RUN pip wheel --wheel-dir /wheels ".${EXTRAS:+[${EXTRAS}]}"

FROM ${PYTHON_IMAGE} AS runtime
ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The wheels are mounted for this one step only, so they never land in a layer. Importing
# every role's entry module proves its dependencies are installed (the operator's pulls in
# kopf, the router's aiohttp, the store's asyncpg): a missing one fails the build, not a pod.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "smsmesh${EXTRAS:+[${EXTRAS}]}" \
    && python -c "import smsmesh.cli, smsmesh.store.postgres, smsmesh.simulator.server, smsmesh_router.app, smsmesh_connector.service, smsmesh_operator.main" \
    && groupadd --system --gid 10001 smsmesh \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin smsmesh
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8081
LABEL org.opencontainers.image.title="smsmesh" \
      org.opencontainers.image.description="Kubernetes-native SMS gateway (operator, router, connector, simulator)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["smsmesh"]
CMD ["--help"]
