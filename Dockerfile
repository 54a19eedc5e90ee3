# azure-agent-mcp: the MCP server in a slim image, run as a non-root user.
# stdio (default):  docker run -i --rm azure-agent-mcp
# HTTP:             docker run -p 8765:8765 azure-agent-mcp --transport http --host 0.0.0.0 --allow-remote
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    AZURE_AGENT_MCP_STATE_DIR=/home/agent/.local/state/azure-agent-mcp

RUN useradd --create-home --uid 10001 agent

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /app/src

USER agent
EXPOSE 8765
ENTRYPOINT ["azure-agent-mcp", "serve"]
