# imgsim in a container (OCI: Docker or Podman). See README "Run in a container".
#
#   docker build -t imgsim .
#   docker run -v "$PWD/photos:/data" -p 127.0.0.1:5000:5000 imgsim
#
# Two stages: the first builds a virtual environment with pip, the second copies only that
# environment onto a fresh bookworm-slim with Python, so no pip cache, build tool or apt list
# reaches the final image. bookworm's Python 3.11 is the one the pinned wheels are built for.

# Where pip finds packages. The defaults suit a machine at home; a build behind a mirror passes
# its own (--build-arg PIP_INDEX_URL=..., see tests/container/run.sh). PyTorch's CPU index gives
# torch==2.13.0 without the multi-GB CUDA libraries that PyPI's build of it pulls.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu

FROM docker.io/library/debian:bookworm-slim AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
# Optional: a folder of wheels (--build-arg PIP_FIND_LINKS=/path, mounted into the build) and a
# CA bundle for a TLS-intercepting proxy (--build-arg PIP_CERT=/path, mounted likewise). Mount
# the bundle at a path of its own: over /etc/ssl/certs it would break Debian's ca-certificates.
ARG PIP_FIND_LINKS=""
ARG PIP_CERT=""
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
# Optional extras of pyproject.toml to install as well, e.g. "milvus" for the Milvus store
# (compose.yaml's milvus profile builds with it); an extra pyproject.toml lacks is ignored.
ARG IMGSIM_EXTRAS=""
# The pinned dependencies first, in a layer of their own: a change to imgsim's code then
# rebuilds only the small layer below. Empty PIP_* variables count as unset for pip.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
COPY pyproject.toml docker/requirements.py /src/
RUN python3 /src/requirements.py /src/pyproject.toml $IMGSIM_EXTRAS > /tmp/requirements.txt \
 && /opt/venv/bin/pip install -r /tmp/requirements.txt
COPY README.md /src/
COPY src /src/src
# Then imgsim itself, and away with what is not needed to run it: pip, the C++ headers, CMake
# files and C++ test programs of torch (its bin/ keeps torch_shm_manager, which DataLoader
# workers use), and the packages' own test suites. setuptools stays: torch requires it.
RUN /opt/venv/bin/pip install --no-deps /src \
 && /opt/venv/bin/pip uninstall -y pip \
 && site=$(/opt/venv/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && rm -rf "$site/torch/include" "$site/torch/share/cmake" "$site/torch/test" \
 && find "$site/torch/bin" -maxdepth 1 -type f ! -name torch_shm_manager -delete \
 && find "$site" -type d -name tests -prune -exec rm -rf {} +

FROM docker.io/library/debian:bookworm-slim
LABEL org.opencontainers.image.title="imgsim" \
      org.opencontainers.image.description="Image similarity search: train, index, search, serve" \
      org.opencontainers.image.licenses="MIT"
# python3: the virtual environment's interpreter is a link to /usr/bin/python3. tini as PID 1
# passes `docker stop`'s SIGTERM on to imgsim, which as PID 1 would ignore it (-g: to the whole
# process group, so a first-run training stops too), and reaps the decoding workers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /usr/sbin/nologin imgsim \
 && mkdir -p /data /work /etc/imgsim \
 && chown imgsim:imgsim /data /work
COPY --from=build /opt/venv /opt/venv
COPY docker/container.toml /etc/imgsim/container.toml
COPY docker/entrypoint.sh docker/healthcheck.py /usr/local/lib/imgsim/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    IMGSIM_WORKDIR=/work \
    IMGSIM_CONTAINER_CONFIG=/etc/imgsim/container.toml \
    MPLCONFIGDIR=/tmp/matplotlib
USER imgsim
WORKDIR /work
# /data: your images (read; written only by POST /images). /work: model, index, checkpoints.
VOLUME ["/data", "/work"]
EXPOSE 5000
# /health answers 200 while the server runs; --start-period covers a first start that trains.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15m --retries=3 \
  CMD ["python3", "/usr/local/lib/imgsim/healthcheck.py"]
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/lib/imgsim/entrypoint.sh"]
CMD ["serve", "--host", "0.0.0.0", "--port", "5000", "--workdir", "/work"]
