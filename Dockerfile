# syntax=docker/dockerfile:1
# fabricad inspection service.
#   CPU:  docker build --target cpu -t fabricad:cpu .
#   GPU:  docker build --target gpu -t fabricad:gpu .   (CUDA runtime + onnxruntime-gpu; run with --gpus all)
# Models and the defect store are volumes: /data/models (exported bundles), /data/store (database,
# defect images, roll reports), /data/media (files for simulated cameras).

ARG PYTHON_VERSION=3.11

# ---- build: one wheel of the project, nothing else --------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fabricad ./fabricad
COPY service ./service
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- CPU: the default service image ------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FABRICAD_MODELS_DIR=/data/models \
    FABRICAD_DATABASE_URL=sqlite:////data/store/fabricad.db \
    FABRICAD_IMAGE_STORE=/data/store/defect-images \
    FABRICAD_REPORT_DIR=/data/store/roll-reports \
    FABRICAD_MEDIA_DIR=/data/media
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=docker/install.sh,target=/tmp/install.sh \
    sh /tmp/install.sh cpu
USER 10001
WORKDIR /home/fabricad
VOLUME ["/data/models", "/data/store"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["fabricad", "serve", "--host", "0.0.0.0", "--port", "8000"]

# ---- GPU: CUDA runtime, onnxruntime-gpu in place of the CPU build -----------------------------
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS gpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FABRICAD_MODELS_DIR=/data/models \
    FABRICAD_DATABASE_URL=sqlite:////data/store/fabricad.db \
    FABRICAD_IMAGE_STORE=/data/store/defect-images \
    FABRICAD_REPORT_DIR=/data/store/roll-reports \
    FABRICAD_MEDIA_DIR=/data/media \
    FABRICAD_PROVIDERS='["cuda", "cpu"]' \
    PATH=/opt/venv/bin:$PATH
# The distribution's Python (3.12 on 24.04) follows the base image's security updates: not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=docker/install.sh,target=/tmp/install.sh \
    sh /tmp/install.sh gpu
USER 10001
WORKDIR /home/fabricad
VOLUME ["/data/models", "/data/store"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["fabricad", "serve", "--host", "0.0.0.0", "--port", "8000"]
