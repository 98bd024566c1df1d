# The hub's one image: Daphne, `hub bridge`, `hub ingest`, `hub migrate` and the simulator
# all run from it (compose.yaml).

# The dashboard's uPlot, from the npm registry as package-lock.json pins it, vendored
# into telemetry/vendor/ (scripts/assets.sh).
FROM node:20-slim AS assets
WORKDIR /assets
COPY package.json package-lock.json ./
COPY scripts/assets.sh scripts/
RUN scripts/assets.sh

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HUB_VAR_DIR=/var/lib/hub
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY hub hub
COPY devices devices
COPY telemetry telemetry
COPY bridges bridges
COPY firmware_sim firmware_sim
# The installed package carries the vendored assets (setup.py needs no npm with them here).
COPY --from=assets /assets/telemetry/vendor telemetry/vendor
RUN pip install . && useradd --system --home /var/lib/hub hub && mkdir -p /var/lib/hub && chown hub /var/lib/hub
USER hub
# 8000: Daphne (HTTP, WebSocket, /metrics); 9100: a worker's --metrics-port.
EXPOSE 8000 9100
STOPSIGNAL SIGTERM
# No --proxy-headers: reached directly, Daphne would take any client's X-Forwarded-For as
# its address. compose.yaml adds it behind nginx, which overwrites that header.
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "hub.asgi:application"]
