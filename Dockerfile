# One image for the API, the worker and the migrate job: compose picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The worker needs a CUDA build of torch. It is installed first, from the PyTorch wheel index, so
# that `pip install` finds `torch>=...` satisfied and keeps it; as its own layer it survives code
# changes. --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu gives a CPU-only image.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN pip install --index-url "${TORCH_INDEX_URL}" torch

# Installed from a throwaway copy: no source tree on the runtime path to shadow the package.
COPY . /tmp/ldaq-src
RUN pip install /tmp/ldaq-src && rm -rf /tmp/ldaq-src

# Compose mounts a named volume at /data; a fresh volume takes this directory's owner, so the
# non-root user can write the model cache there. Hub downloads land in the same volume.
RUN useradd --create-home --uid 1000 ldaq && mkdir /data && chown ldaq:ldaq /data
ENV LDAQ_DATA_DIR=/data \
    HF_HOME=/data/huggingface

USER ldaq
WORKDIR /home/ldaq
EXPOSE 8000
ENTRYPOINT ["ldaq"]
CMD ["api", "--host", "0.0.0.0"]
