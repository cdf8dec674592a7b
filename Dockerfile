# portpatrol: the image people run as a Kubernetes initContainer or as a wrapper in docker-compose.
# How it is built, hardened and tested: docs/image.md. The real build and run test: tests/image/build-and-run.sh.
#
# BASE must be a Debian-family image with python3 (>=3.11) on PATH, python3 -m venv, and apt-get.
# Both stages come from it, so the venv's interpreter link (/usr/local/bin/python3 in the official image,
# /usr/bin/python3 in a Debian rootfs) is valid in the final stage too. Nothing below names that path.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# .dockerignore lets in only what `pip install .` reads.
COPY . .
# A normal (non-editable) install into a venv; pip and setuptools leave the venv afterwards, because
# nothing installs into it at run time. The bytecode is compiled here with unchecked-hash .pyc files: they
# stay valid whatever the file times become after COPY, and Python never looks at the sources again, so
# a read-only root filesystem starts as fast as a writable one and nothing is written at run time.
RUN python3 -m venv /opt/portpatrol \
 && /opt/portpatrol/bin/python -m pip install --no-compile . \
 && /opt/portpatrol/bin/python -m pip uninstall --yes pip setuptools \
 && /opt/portpatrol/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/portpatrol/lib

FROM ${BASE}
ARG BASE
ARG VERSION=dev
ARG REVISION=unknown
# Debian's tini, installed through dpkg so image scanners see it. Override TINI_VERSION for a base whose
# Debian release carries another version.
ARG TINI_VERSION=0.19.0-1+b3
# The official python images ship the standard library without .pyc files; compile the parts a start
# could import (the regex leaves out tests, IDLE, Tk, 2to3 and the like) so no start compiles anything.
# On a Debian python3 base they are already compiled and compileall only checks them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends "tini=${TINI_VERSION}" \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && python3 -c 'import compileall, re, sys, sysconfig; \
skip = re.compile(r"/(test|tests|idle_test|idlelib|tkinter|turtledemo|lib2to3|ensurepip|pydoc_data)/"); \
sys.exit(not compileall.compile_dir(sysconfig.get_path("stdlib"), quiet=1, workers=0, rx=skip))'
COPY --from=build /opt/portpatrol /opt/portpatrol

ENV PATH=/opt/portpatrol/bin:${PATH} \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

LABEL org.opencontainers.image.title="portpatrol" \
      org.opencontainers.image.description="Waits until TCP ports, HTTP endpoints and ICMP hosts are ready, then exits 0 or becomes the wrapped command." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE}"

# No name in /etc/passwd is needed: numeric, so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# tini is PID 1: it reaps zombies of the wrapped command and forwards every signal to its one child,
# portpatrol, which after `--` execs the wrapped command in its own place. Why not -g: docs/image.md.
ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/opt/portpatrol/bin/portpatrol"]
