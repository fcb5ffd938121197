# The nudge stream worker. Used by docker-compose.yml (`docker compose up --build`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from the runtime lock alone (exact versions and hashes,
# the Kafka compression codecs included): this layer stays cached while only
# the code changes. Every dependency ships manylinux wheels (no compiler).
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# Then the project itself (the build context is filtered by .dockerignore).
COPY . .
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app nudge \
    && mkdir -p /data /models \
    && chown nudge /data /models

# The shipped catalog, policy and experiments are package data (nudge.config);
# mount your own and set NUDGE_CATALOG / NUDGE_POLICY / NUDGE_EXPERIMENTS to
# change them. RocksDB tables go to /data (a volume per container). Model
# artifacts are read from /models, a volume: the image ships no model, so
# without one there the worker serves the heuristic (and says so in a metric).
ENV NUDGE_DATA_DIR=/data \
    NUDGE_MODEL_DIR=/models \
    NUDGE_WEB_HOST=0.0.0.0 \
    NUDGE_WEB_PORT=6066

USER nudge
VOLUME ["/data", "/models"]
EXPOSE 6066

CMD ["nudge", "worker"]
