# One image for every E-Monitor component: `emon gateway|bridge|hub|router|map|init|sim`.
# Build: docker build -t emon .   Run: docker compose up (see docker-compose.yml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY emon_core ./emon_core
COPY gateway ./gateway
COPY bridge ./bridge
COPY hub ./hub
COPY paramedic_router ./paramedic_router
COPY map_ui ./map_ui
COPY simulators ./simulators
RUN pip install '.[gateway,sim,bridge,hub,router,ui]' \
 && useradd --system --uid 10001 --home-dir /var/lib/emon emon \
 && mkdir -p /var/lib/emon \
 && NUMBA_CACHE_DIR=/var/lib/emon/numba-cache python -m gateway.signal.warmup \
 && chown -R emon /var/lib/emon

USER emon
ENV EMON_STATE_DIR=/var/lib/emon \
    NUMBA_CACHE_DIR=/var/lib/emon/numba-cache
VOLUME ["/var/lib/emon"]
ENTRYPOINT ["emon"]
CMD ["--help"]
