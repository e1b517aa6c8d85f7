# Stand-in for python:3.10-slim-bookworm on hosts that cannot pull from a registry.
# Built by `cargo xtask setup` on top of a debootstrap'ed Debian imported as
# iopaint-standin/debian:bookworm; Debian's bookworm ships Python 3.11.
ARG DEBIAN_IMAGE=iopaint-standin/debian:bookworm
FROM ${DEBIAN_IMAGE}
ENV LANG=C.UTF-8
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/bin/python3 /usr/local/bin/python
CMD ["python3"]
