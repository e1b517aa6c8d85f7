ARG BASE=xtask-fixture-busybox:tmp
FROM ${BASE} AS frontend-builder
RUN echo "npm ci (slow)" && sleep 3 && echo never

FROM ${BASE} AS python-builder
RUN sleep 0.5 && echo "pip: building wheel" && echo "Traceback (most recent call last):" && echo "  File setup.py, line 1" && echo "ModuleNotFoundError: No module named 'torch'" && exit 2

FROM ${BASE} AS runtime
COPY --from=python-builder /bin/busybox /x
COPY --from=frontend-builder /bin/busybox /y
