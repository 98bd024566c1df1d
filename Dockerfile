# The hub's one image: Daphne, `hub bridge`, `hub ingest` and the simulator all run from it.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HUB_VAR_DIR=/var/lib/hub
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub hub
COPY devices devices
COPY telemetry telemetry
COPY bridges bridges
COPY firmware_sim firmware_sim
RUN pip install . && useradd --system --home /var/lib/hub hub && mkdir -p /var/lib/hub && chown hub /var/lib/hub
USER hub
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "hub.asgi:application"]
