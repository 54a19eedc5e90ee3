# azure-agent-mcp: the MCP server in a slim image, run as a non-root user.
#
# By default the image serves MCP over HTTP for a team, with Entra authentication and
# on-behalf-of tokens (README, "Running it for a team"). It refuses to start until you name the
# tenant and the server's app registration with its credential, for example:
#   docker run -p 8765:8765 -e OBO_SECRET=... azure-agent-mcp \
#       --tenant <tenant-id> --auth-client-id <server-app-id> --auth-secret-env OBO_SECRET
# (--auth-assertion-file for a federated credential; deploy/kubernetes.yaml shows AKS workload identity.)
# Any arguments replace CMD, so the HTTP defaults below are kept by ENTRYPOINT's shell.
# stdio for one local agent instead:   docker run -i --rm --entrypoint azure-agent-mcp azure-agent-mcp serve
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
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["sh", "-c", "exec azure-agent-mcp serve --transport http --host 0.0.0.0 --allow-remote --port 8765 \"$@\"", "azure-agent-mcp"]
CMD []
