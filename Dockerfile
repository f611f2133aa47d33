# syntax=docker/dockerfile:1
#
# unimed-data and its trainer in one image, installed by uv from uv.lock.
#
#   docker build -t unimed-data .                      # CUDA torch (the lock as is)
#   docker build -t unimed-data:cpu --build-arg TORCH=cpu .
#
# Design:
# - Dependencies come from uv.lock alone (--frozen: the lock is read, never rewritten) and are installed in
#   a layer built from pyproject.toml and uv.lock only, so editing the code does not reinstall torch.
# - TORCH=cuda installs the lock as it is (PyPI's Linux torch is the CUDA build). TORCH=cpu installs every
#   locked package except torch, torchvision and the CUDA runtime (triton, nvidia-*, cuda-*), then the CPU
#   builds of the same torch and torchvision versions, read from the lock, from TORCH_CPU_INDEX.
# - The project is built into a wheel in a stage of its own, with its build backend pinned (BUILD_BACKEND),
#   and the wheel is installed with --no-deps from a bind mount of that stage: the wheel carries manifests/,
#   prompts/ and recipes/, its dependencies are the locked ones already there, and no layer of the final
#   image holds the wheel or a second copy of the sources.
# - uv's cache lives in a build cache mount, so no layer keeps downloaded wheels; no apt, no secrets:
#   credentials (AWS_*, HF_TOKEN, KAGGLE_*) are given at run time with `docker run -e`.
# - The tool runs as an unprivileged user in /data, the folder to mount for inputs and outputs.
#
# tests/test_dockerfile.py lints this file and replays the install steps of the final stage, and of the
# stages it takes files from, in fresh folders; a RUN preceded by a comment starting with "image-only:" is
# one it skips (it only makes sense in an image).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS wheel

# The build backend and every package it installs, pinned: build isolation would otherwise take the newest.
ARG BUILD_BACKEND="hatchling==1.33.0 packaging==26.4 pathspec==1.1.1 pluggy==1.7.0 tomlkit==0.15.2 trove-classifiers==2026.9.21.13"

COPY --from=uv /uv /usr/local/bin/uv

ENV UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

WORKDIR /src

COPY pyproject.toml README.md ./
COPY unimed_data ./unimed_data
COPY train ./train
COPY manifests ./manifests
COPY prompts ./prompts
COPY recipes ./recipes

RUN --mount=type=cache,target=/root/.cache/uv \
    uv build --wheel --out-dir dist --build-constraint <(tr ' ' '\n' <<< "$BUILD_BACKEND")

FROM ${PYTHON_IMAGE}

# cuda or cpu; which extras of the project to install (space-separated).
ARG TORCH=cuda
ARG EXTRAS="train s3 download"
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

COPY --from=uv /uv /usr/local/bin/uv

# The cache is a mount on another filesystem (copy, not hardlink); .pyc files are compiled at build time
# because the unprivileged user cannot write them into the root-owned environment.
ENV UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    VIRTUAL_ENV=/app/.venv \
    PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

WORKDIR /app

COPY pyproject.toml uv.lock ./

RUN --mount=type=cache,target=/root/.cache/uv \
    args=(); \
    for extra in $EXTRAS; do args+=(--extra "$extra"); done; \
    cpu_torch=(); \
    if [ "$TORCH" = cpu ]; then \
        locked=$(uv export --frozen --no-dev --no-hashes --no-header --no-annotate --no-emit-project "${args[@]}"); \
        mapfile -t cpu_torch < <(awk '/^torch(vision)?==/ {print $1}' <<< "$locked"); \
        mapfile -t cuda_only < <(awk -F'==' '/^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==/ {print $1}' <<< "$locked"); \
        for name in "${cuda_only[@]}"; do args+=(--no-install-package "$name"); done; \
    elif [ "$TORCH" != cuda ]; then \
        echo "error: TORCH=$TORCH: expected cuda or cpu" >&2; exit 2; \
    fi; \
    uv sync --frozen --no-dev --no-install-project "${args[@]}"; \
    if [ "${#cpu_torch[@]}" -gt 0 ]; then \
        uv pip install --python .venv --no-deps --index-url "$TORCH_CPU_INDEX" "${cpu_torch[@]}"; \
    fi

RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=wheel,source=/src/dist,target=/tmp/wheel \
    uv pip install --python .venv --no-deps /tmp/wheel/*.whl \
    && unimed-data --help > /dev/null

# image-only: the account the tool runs as, and its working folder.
RUN useradd --create-home --no-log-init --uid 1000 --user-group unimed \
    && mkdir /data \
    && chown 1000:1000 /data

USER 1000:1000
WORKDIR /data

ENTRYPOINT ["unimed-data"]
CMD ["--help"]
