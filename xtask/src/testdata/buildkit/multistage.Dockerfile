# syntax-free multistage fixture shaped like docker/CPUDockerfile.multistage
ARG BASE=xtask-fixture-busybox:tmp

FROM ${BASE} AS frontend-builder
WORKDIR /src
COPY web_app/package.json ./
RUN echo "npm ci" && sleep 1 && mkdir node_modules && echo "added 312 packages in 1s"
COPY web_app/src ./src
RUN echo "vite build" && mkdir dist && cp src/* dist/ && echo "built in 0.8s"

FROM ${BASE} AS python-builder
WORKDIR /build
COPY iopaint/pyproject.toml ./
RUN echo "pip install deps" && sleep 1 && mkdir -p /opt/venv && echo deps > /opt/venv/deps && echo "Successfully installed fastapi"

FROM ${BASE} AS runtime
COPY --from=python-builder /opt/venv /opt/venv
WORKDIR /app
COPY iopaint/ /app/iopaint/
COPY --from=frontend-builder /src/dist /app/iopaint/web_app/
RUN echo "install app" && ls /app/iopaint
CMD ["echo", "hi"]
