# syntax=docker/dockerfile:1
# fabricad inspection service (bundles only, no PyTorch), one Dockerfile for both variants (build argument VARIANT):
#   CPU:  docker build -t fabricad:cpu .
#   GPU:  docker build --build-arg VARIANT=gpu -t fabricad:gpu .   (CUDA runtime + onnxruntime-gpu; run with --gpus all)
# Models and the defect store are volumes: /data/models (exported bundles), /data/store (database,
# defect images, roll reports); /data/media holds files for simulated cameras.

ARG PYTHON_VERSION=3.11
ARG VARIANT=cpu

# ---- build: one wheel of the project, nothing else --------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fabricad ./fabricad
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- the two bases: a Python, and for the GPU the CUDA runtime ---------------------------------
FROM python:${PYTHON_VERSION}-slim AS base-cpu

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS base-gpu
# The distribution's Python (3.12 on 24.04) follows the base image's security updates: not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    FABRICAD_PROVIDERS='["cuda", "cpu"]'

# ---- runtime: the service on the chosen base (a stage of this file, hence no tag) -----------------
# hadolint ignore=DL3006
FROM base-${VARIANT} AS runtime
ARG VARIANT
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FABRICAD_MODELS_DIR=/data/models \
    FABRICAD_DATABASE_URL=sqlite:////data/store/fabricad.db \
    FABRICAD_IMAGE_STORE=/data/store/defect-images \
    FABRICAD_REPORT_DIR=/data/store/roll-reports \
    FABRICAD_MEDIA_DIR=/data/media
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=docker/install.sh,target=/tmp/install.sh \
    sh /tmp/install.sh "${VARIANT}"
USER 10001
WORKDIR /home/fabricad
VOLUME ["/data/models", "/data/store"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["fabricad", "serve", "--host", "0.0.0.0", "--port", "8000"]
