# syntax=docker/dockerfile:1
#
# garment-sorter inference service: one image for GPU hosts and CPU-only hosts.
#
#   docker build -t garment-sorter:0.1.0 .
#   docker run --rm -p 8000:8000 garment-sorter:0.1.0                 # CPU
#   docker run --rm -p 8000:8000 --gpus all garment-sorter:0.1.0      # GPU (NVIDIA Container Toolkit)
#
# Base: python:3.11-slim + TensorFlow's `and-cuda` wheels (pinned in deploy/docker/requirements.lock),
# not TensorFlow's own GPU image. Why:
# - The wheels carry the CUDA runtime, cuDNN, cuBLAS and NCCL as ordinary pip packages; the host
#   supplies only the NVIDIA driver. TensorFlow finds the libraries in site-packages, and with no
#   GPU visible it runs on the CPU, so the same image serves both kinds of host.
# - tensorflow/tensorflow:*-gpu is an Ubuntu image with a full CUDA toolkit, a root user and
#   TensorFlow's own Python, and its tags move with TensorFlow releases; here the Python, TensorFlow
#   and CUDA versions are pinned by us (the lock) and are the ones the test suite runs against.

# --- builder: a virtual environment with the locked dependencies, then the app --------------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, in their own layer: TensorFlow with CUDA is ~3 GB and changes far less often
# than the code. --no-deps + pip check: the image gets exactly the lock, and an incomplete lock
# fails the build instead of resolving something untested.
COPY deploy/docker/requirements.lock ./
RUN pip install --no-cache-dir --no-deps --requirement requirements.lock \
    && pip check

# The code: the service (app/) and the train/serve contract it reads (contract/). training/ and
# bench/ never run in the service and are not copied.
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY app ./app
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && garment-sorter serve --help >/dev/null

# --- runtime ---------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

# tini as PID 1: it forwards SIGTERM to the server (which then drains, see docs/deploy.md) and reaps
# zombies. Without it the server would be PID 1, which the kernel shields from signals it has no
# handler for yet, so a SIGTERM during start-up (model load) would be ignored until SIGKILL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 sorter \
    && useradd --system --uid 10001 --gid sorter --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sorter \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/garment-sorter

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=1 \
    KERAS_HOME=/tmp/.keras \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    SORTER_MODEL_DIR=/srv/garment-sorter/models/fashion-cnn \
    SORTER_DATA_DIR=/var/lib/garment-sorter \
    SORTER_LOG_FORMAT=json \
    SORTER_ACCESS_LOG=true

WORKDIR /srv/garment-sorter

COPY --from=builder /opt/venv /opt/venv
# The served model version only (not its held-out twin or the model card), baked in and owned by
# root (read-only to the service). Mount another models/fashion-cnn over it, or point
# SORTER_MODEL_DIR elsewhere, to serve a different version.
COPY models/fashion-cnn/9 ./models/fashion-cnn/9

# The decision log (SQLite unless SORTER_DATABASE_URL names PostgreSQL) and its spool: mount a
# volume here, or decisions end with the container.
VOLUME ["/var/lib/garment-sorter"]

# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000

# Liveness only (/healthz); readiness (/readyz) is for load balancers and Kubernetes. The start
# period covers the TensorFlow import, the model load and the warm-up at every batch size.
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

# One uvicorn worker per container: the micro-batcher needs every request in one process to form
# batches, and one process owns the GPU. Scale with replicas, not workers.
ENTRYPOINT ["tini", "--"]
CMD ["garment-sorter", "serve", "--host", "0.0.0.0", "--port", "8000"]
