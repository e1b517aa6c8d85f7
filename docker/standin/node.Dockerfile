# Stand-in for node:18-alpine on hosts that cannot pull from a registry:
# Debian bookworm's nodejs 18 and npm 9.
ARG DEBIAN_IMAGE=iopaint-standin/debian:bookworm
FROM ${DEBIAN_IMAGE}
ENV LANG=C.UTF-8
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
CMD ["node"]
