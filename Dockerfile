# syntax=docker/dockerfile:1
# DynaLay Serve image. Two variants from one file, picked by the VARIANT build arg:
#   docker build -t dynalay-serve:gpu .                          # default: CUDA runtime base
#   docker build -t dynalay-serve:cpu --build-arg VARIANT=cpu .  # CPU-only torch, slim base
# Needs BuildKit (the default builder since Docker 23): only the stages of the chosen variant
# are built. Run: docker run --gpus all -p 8000:8000 dynalay-serve:gpu
# The default checkpoints are baked into /opt/dynalay/checkpoints; to serve others, mount a
# directory and point DYNALAY_MODEL_DIR at it:
#   docker run -v "$PWD/my-models:/models:ro" -e DYNALAY_MODEL_DIR=/models ...

ARG VARIANT=gpu
# torch 2.13.0 wheels from PyPI are built for CUDA 13.0 + cuDNN 9 (they bundle those libraries;
# the host only needs a recent enough NVIDIA driver); onnxruntime-gpu 1.2x/1.3x uses the same.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

# ---------------------------------------------------------------------------------------------
# Bases: the OS + Python each variant runs on. A virtualenv is only valid on the interpreter it
# was built with, so each variant's build stage starts FROM its own base.
FROM ${PYTHON_IMAGE} AS base-cpu

FROM ${CUDA_IMAGE} AS base-gpu
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------------------------------------
# Build stages: a virtualenv in /opt/venv with torch and the project (non-editable install):
# the core dependencies plus one serving extra (`onnx` on CPU, `gpu` with onnxruntime-gpu), so no
# training-only library (pyproject's `train` extra) and no development client is in the image.
FROM base-cpu AS build-cpu
ARG TORCH_VERSION
ARG TORCH_CPU_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU-only torch first (the PyPI wheel is the CUDA build, ~3 GB of libraries a CPU image never
# uses); `torch==2.13.0` in pyproject is then already satisfied by 2.13.0+cpu.
RUN pip install --index-url "${TORCH_CPU_INDEX}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY model/ model/
COPY service/ service/
RUN pip install ".[onnx]"

FROM base-gpu AS build-gpu
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY model/ model/
COPY service/ service/
RUN pip install ".[gpu]"

# ---------------------------------------------------------------------------------------------
# Runtime stages: the base plus the finished virtualenv, no pip cache, no sources, no compilers.
FROM base-cpu AS runtime-cpu
COPY --from=build-cpu /opt/venv /opt/venv

FROM base-gpu AS runtime-gpu
COPY --from=build-gpu /opt/venv /opt/venv

# ---------------------------------------------------------------------------------------------
# Final image, shared by both variants.
FROM runtime-${VARIANT} AS final
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=4 \
    DYNALAY_HOST=0.0.0.0 \
    DYNALAY_PORT=8000 \
    DYNALAY_GRPC_PORT=8001 \
    DYNALAY_ONNX_CACHE_DIR=/var/cache/dynalay/onnx \
    DYNALAY_MODEL_DIR=/opt/dynalay/checkpoints
# Non-root user; the checkpoints stay root-owned and read-only to it.
RUN groupadd --system --gid 10001 dynalay \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin dynalay
# The ONNX engine exports the checkpoints' parts into this cache on load (DYNALAY_ENGINE=onnx).
RUN mkdir -p /var/cache/dynalay/onnx && chown -R 10001:10001 /var/cache/dynalay
WORKDIR /opt/dynalay
COPY checkpoints/ /opt/dynalay/checkpoints/
USER 10001:10001
EXPOSE 8000 8001
# No curl in the image: a Python one-liner; urlopen raises (exit 1) on a 503 from /readyz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('DYNALAY_PORT', '8000'), timeout=4)"]
# Exec form: python is the process that receives SIGTERM, and uvicorn drains in-flight requests.
ENTRYPOINT ["python", "-m", "service"]
