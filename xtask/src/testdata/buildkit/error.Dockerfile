ARG BASE=xtask-fixture-busybox:tmp
FROM ${BASE} AS frontend-builder
RUN echo "npm ci" && echo ok > /ok

FROM ${BASE} AS python-builder
WORKDIR /build
RUN echo "Collecting torch==2.1.2" && echo "ERROR: Could not find a version that satisfies the requirement torch==2.1.2" >&2 && exit 1

FROM ${BASE} AS runtime
COPY --from=python-builder /build /build
COPY --from=frontend-builder /ok /ok
