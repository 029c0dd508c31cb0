# One image for the API, the worker and the migrate job: compose picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The worker needs a CUDA build of torch. It is installed first, pinned, from the PyTorch wheel
# index, so that `pip install` finds `torch>=...` satisfied and keeps it; as its own layer it
# survives code changes. --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu gives a
# CPU-only image; TORCH_VERSION picks another release (it must exist on that index).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG TORCH_VERSION=2.13.0
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
    || { echo "could not install torch==${TORCH_VERSION} from ${TORCH_INDEX_URL}: set the build arguments TORCH_INDEX_URL (a reachable wheel index or mirror) and TORCH_VERSION (a version it serves) in .env" >&2; exit 1; }

# Installed from a throwaway copy: no source tree on the runtime path to shadow the package.
COPY . /tmp/ldaq-src
RUN pip install /tmp/ldaq-src && rm -rf /tmp/ldaq-src

# Compose mounts a named volume at /data; a fresh volume takes this directory's owner, so the
# non-root user can write the model cache there. Hub downloads land in the same volume.
RUN useradd --create-home --uid 1000 ldaq && mkdir /data && chown 1000:1000 /data
ENV LDAQ_DATA_DIR=/data \
    HF_HOME=/data/huggingface

USER 1000:1000
WORKDIR /home/ldaq
EXPOSE 8000
ENTRYPOINT ["ldaq"]
CMD ["api", "--host", "0.0.0.0"]
