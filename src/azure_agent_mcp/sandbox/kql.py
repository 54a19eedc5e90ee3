"""The sandbox's KQL: the documented subset that Resource Graph and Log Analytics rooms evaluate.

One module for every room, so that both services agree on the language and each only maps
``KqlError`` to its own error shape. The subset: ``where`` (==, =~, !=, !~, contains, startswith,
endswith, has and their negations, in/!in/in~, and/or/not(), isempty/isnotempty, comparisons on
numbers and datetimes), ``project``, ``extend``, ``summarize <aggregations> by <keys>``,
``order by``/``sort by`` (desc by default), ``take``/``limit``, ``top N by``, ``mv-expand``,
``count`` and ``distinct``; ``properties.x.y`` and ``tags['a b']`` paths; a small set of scalar
functions. Everything else raises ``KqlError`` naming what is unsupported.
"""

from __future__ import annotations

from azure_agent_mcp.sandbox.kql_ast import Column, KqlError, Query, Table
from azure_agent_mcp.sandbox.kql_eval import evaluate
from azure_agent_mcp.sandbox.kql_parser import parse
from azure_agent_mcp.sandbox.kql_values import format_datetime, tostring

__all__ = ["Column", "KqlError", "Query", "Table", "evaluate", "format_datetime", "parse", "tostring"]
