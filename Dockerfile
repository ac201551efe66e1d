# The reference agent service: `ha-agent-tracing serve` on port 8000.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HA_AGENT_HOST=0.0.0.0 \
    HA_AGENT_PORT=8000 \
    HA_AGENT_TRACING_HISTORY_PATH=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && useradd --create-home --uid 10001 agent && mkdir /data && chown agent /data

# The report history (SQLite): mount a volume here to keep it across containers.
VOLUME ["/data"]

USER agent
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8000/health', timeout=2)"]
CMD ["ha-agent-tracing", "serve"]
