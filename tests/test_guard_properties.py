"""Adversarial property tests for the guard (issue 9): a grammar of hostile path segments.

Hostile pieces (dot segments, escapes of separators and of unreserved characters, double
escapes, NUL, backslashes, non-ASCII raw and escaped, spaces, lower-case escapes, ``?``, ``#``,
``@``, ``:``, Unicode dots...) are mixed with ordinary ARM segments. The properties:

a. Whatever ``map_request`` accepts is sent byte for byte as decided: requests'
   ``PreparedRequest.prepare_url`` and urllib3's ``parse_url`` (and the request target urllib3
   writes) give exactly ``MappedRequest.path`` and the host the decision was about; and through
   the real enforcement policy and azure-core's requests transport, the request line a local
   HTTP server receives carries that very path.
b. Decoding each accepted segment once (as ARM does) yields the segments the policy decided on;
   a hostile value put where a name stands is either refused or is a name: it never changes the
   operation, only (decoded) the name in the scope.
c. No value of any URL-bound tool argument changes a tool's operation, host or scope: the tool
   refuses it with ToolInputError, or the planned requests map to the tool's own operation with
   the value as exactly the segment(s) it names.
d. Continuation tokens: forged, edited, replayed in another session, for another tool or another
   listing are refused with InvalidContinuation; genuine ones round-trip. Also through the server.
"""

from __future__ import annotations

import json
import re
import string
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from requests.models import PreparedRequest
from urllib3.util import parse_url

from azure_agent_mcp.environment import public_cloud
from azure_agent_mcp.policy import Endpoints, UnmappableRequestError, map_request, parse_policy
from azure_agent_mcp.policy.arm_mapping import ArmShapeError, map_arm
from azure_agent_mcp.policy.urlpath import quote_segment
from azure_agent_mcp.policy.vault_mapping import VaultShapeError, map_vault
from azure_agent_mcp.tools import catalog
from azure_agent_mcp.tools import continuation as tokens
from azure_agent_mcp.tools.base import ToolInputError
from azure_agent_mcp.tools.clients import AzureSession

AZ = Endpoints.public_cloud()
SANDBOX = Endpoints("https://127.0.0.1:8443", "https://127.0.0.1:8443/vaults/{vault}")
SUB = "00000000-0000-0000-0000-00000000000a"
S = f"/subscriptions/{SUB}"
G = f"{S}/resourceGroups/rg-app"
ACCOUNT = f"{G}/providers/Microsoft.Storage/storageAccounts/stapp"
SITE = f"{G}/providers/Microsoft.Web/sites/web-app"
WORKSPACE = f"{G}/providers/Microsoft.OperationalInsights/workspaces/ws1"

# ``sends_nothing`` is function-scoped on purpose: it checks the sandbox log once around all examples
_HEALTH = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
FAST = settings(max_examples=300, deadline=None, suppress_health_check=_HEALTH)
SOME = settings(max_examples=200, deadline=None, suppress_health_check=_HEALTH)

# -- the grammar -----------------------------------------------------------------------------------

HOSTILE = [
    ".", "..", "", "...", "%2e", "%2E", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%2f", "%2F", "%5c", "%5C",
    "%25", "%252f", "%252F", "%252e", "%2525", "%00", "%0a", "%0D", "%09", "%7f", "\\", "\\..", ";", ";x=1",
    "é", "%C3%A9", "%c3%a9", "%C3", "%FF", " ", "%20", "+", "%2B", "%7e", "%7E", "~", "%41", "%61", "%2d",
    "%5f", "%zz", "%", "%2", "%%", "?", "?x=1", "#", "#f", "@", "@evil.example", ":", ":443", "%3A", "%40",
    "%3F", "%23", "%3B", "%3D", "%26", "%27", "'", "!", "*", "(", ")", "$", ",", "=", "&", "[", "]", "{", "}",
    "|", "^", "`", '"', "<", ">", "%5B", "%5D", "\t", "\n", "\r", "\x00", "\x7f", "\u3002", "\uff0e",
    "\u2024", "\ufe52", "\uff0f", "\u2215", "\u00a0", "%E3%80%82", "%EF%BC%8E", "%e2%80%a4", "/", "//",
    "/.", "/..", "./", "../", "%2F..", "..%2F", "%2e%2e%2f", "\\\\", "A", "a",
]
# ordinary segments, ARM's keywords among them: a name that spells a keyword must stay a name
NORMAL = [
    "stapp", "rg-app", "web-app", "kv-ops", "x1", "default", "providers", "resourceGroups", "resourcegroups",
    "subscriptions", "resources", "listKeys", "secrets", "versions", "Microsoft.Storage", "storageAccounts",
    "config", "list", "batch", "tenants", "locations", SUB,
]
_CHUNK = st.text(alphabet=string.ascii_letters + string.digits + "-._~", min_size=1, max_size=5)
hostile_piece = st.sampled_from(HOSTILE)
hostile_segment = st.lists(
    st.one_of(hostile_piece, hostile_piece, st.sampled_from(NORMAL), _CHUNK), min_size=1, max_size=4
).map("".join)
# pieces the guard lets through (delimiters a segment may hold raw, escapes ARM names carry): mixed in
# so that enough hostile-looking URLs are accepted for the "accepted" properties to bite
PASSABLE = [";", ":", "@", "%20", "%27", "~", "!", "$", "&", "'", "(", ")", "*", "+", ",", "=", "%3F", "%23",
            "%5B", "%5D", "%22", "%3C", "%7B", "%60", "...", "-", "_", "%3B", "%40", "%3A", "%2B", "%3D"]
passable_segment = st.lists(
    st.one_of(st.sampled_from(PASSABLE), st.sampled_from(NORMAL), _CHUNK), min_size=1, max_size=4
).map("".join)
segment = st.one_of(st.sampled_from(NORMAL), hostile_segment)
query = st.one_of(
    st.just(""),
    st.just(""),
    st.lists(
        st.sampled_from(["api-version=2022-09-01", "$filter=a%20b", "x=/../y", "%2e%2e", "a=%zz", "é", " ", "?",
                         "&", "=", "x=%2F", "$skiptoken=abc", "#", "\\", "%00"]),
        min_size=1, max_size=3,
    ).map(lambda parts: "?" + "&".join(parts)),
)

# (method, origin, endpoints, path): requests the mapper understands, to mutate
TEMPLATES: list[tuple[str, str, Endpoints, str]] = [
    *(("GET" if m is None else m, "https://management.azure.com", AZ, p) for m, p in [
        (None, "/subscriptions"), (None, S), (None, f"{S}/resourcegroups"), (None, G), ("PUT", G), ("DELETE", G),
        (None, f"{G}/resources"), (None, f"{S}/resources"), (None, ACCOUNT), ("POST", f"{ACCOUNT}/listKeys"),
        (None, f"{ACCOUNT}/blobServices/default/containers"), ("POST", f"{SITE}/config/appsettings/list"),
        (None, f"{ACCOUNT}/providers/Microsoft.Authorization/roleAssignments"),
        ("POST", "/providers/Microsoft.ResourceGraph/resources"), ("POST", f"{WORKSPACE}/api/query"),
        ("PUT", f"{S}/tagNames/env/tagValues/prod"),
    ]),
    ("GET", "https://127.0.0.1:8443", SANDBOX, f"{G}/providers/Microsoft.KeyVault/vaults/kv-ops"),
    ("POST", "https://127.0.0.1:8443", SANDBOX, f"{ACCOUNT}/listKeys"),
    *((m, "https://kv-ops.vault.azure.net", AZ, p) for m, p in [
        ("GET", "/secrets"), ("GET", "/secrets/db-password"), ("GET", "/secrets/db-password/abc123"),
        ("GET", "/secrets/db-password/versions"), ("PUT", "/secrets/x"), ("DELETE", "/keys/k1"),
        ("POST", "/keys/k1/v1/decrypt"), ("GET", "/certificates/c1"),
    ]),
    *((m, "https://127.0.0.1:8443", SANDBOX, p) for m, p in [
        ("GET", "/vaults/kv-ops/secrets"), ("GET", "/vaults/kv-ops/secrets/db-password"),
        ("PUT", "/vaults/kv-ops/secrets/x"), ("GET", "/vaults/kv-ops/keys/k1"),
    ]),
]


@st.composite
def mutated(draw: st.DrawFn, hostile: bool = True) -> tuple[str, str, Endpoints]:
    """A template request with hostile segments put in, glued on, or replacing its own.

    ``hostile=False`` uses only pieces the guard lets through (so that most results are accepted
    and the "whatever is accepted" properties get many accepted examples).
    """
    method, origin, endpoints, path = draw(st.sampled_from(TEMPLATES))
    segs = path[1:].split("/")
    pieces = st.one_of(hostile_segment, passable_segment, passable_segment) if hostile else passable_segment
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        at = draw(st.integers(0, len(segs) if hostile else len(segs) - 1))
        how = draw(st.integers(0, 4) if hostile else st.sampled_from([1, 2, 2, 3, 3]))
        piece = draw(pieces)
        if how == 0 or at == len(segs):
            segs.insert(at, draw(st.one_of(segment, passable_segment)) if hostile else piece)
        elif how == 1:
            segs[at] = piece
        elif how == 2:
            segs[at] = segs[at] + piece
        elif how == 3:
            segs[at] = piece + segs[at]
        elif segs[at]:  # the same segment with one character escaped (upper or lower case)
            i = draw(st.integers(0, len(segs[at]) - 1))
            c = segs[at][i]
            escaped = f"%{ord(c):02X}" if draw(st.booleans()) else f"%{ord(c):02x}"
            segs[at] = segs[at][:i] + escaped + segs[at][i + 1:]
    trailing = "/" if hostile and draw(st.integers(0, 6)) == 0 else ""
    spelled = "/" + "/".join(segs) + trailing
    return draw(st.sampled_from([method, method.lower()])), origin + spelled + (draw(query) if hostile else ""), endpoints


@st.composite
def random_request(draw: st.DrawFn) -> tuple[str, str, Endpoints]:
    """Paths made of ARM segments and hostile ones in any order."""
    method = draw(st.sampled_from(["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"]))
    origin, endpoints = draw(st.sampled_from([
        ("https://management.azure.com", AZ), ("https://kv-ops.vault.azure.net", AZ),
        ("https://127.0.0.1:8443", SANDBOX), ("https://127.0.0.1:8443/vaults/kv-ops", SANDBOX),
    ]))
    segs = draw(st.lists(segment, min_size=1, max_size=9))
    return method, origin + "/" + "/".join(segs) + draw(query), endpoints


requests_to_try = st.one_of(mutated(), mutated(hostile=False), mutated(hostile=False), random_request())


def _mapped(method: str, url: str, endpoints: Endpoints) -> Any:
    try:
        return map_request(method, url, endpoints)
    except UnmappableRequestError:
        return None


def _origin_of(endpoints: Endpoints, mapped: Any) -> tuple[str, int]:
    """The (host, port) the decision was about: ARM's, or the vault's."""
    if mapped.plane == "arm":
        parts = urlsplit(endpoints.arm_endpoint)
    else:
        parts = urlsplit(endpoints.keyvault_url_template.replace("{vault}", mapped.vault))
    return parts.hostname.lower(), parts.port or 443


# -- a. decided == sent ----------------------------------------------------------------------------


def _assert_sent_as_decided(method: str, url: str, endpoints: Endpoints, mapped: Any) -> None:
    prepared = PreparedRequest()
    prepared.prepare_url(url, None)  # requests refusing an accepted URL would also be a failure here
    sent = urlsplit(prepared.url)
    assert sent.path == mapped.path, (url, prepared.url)
    assert prepared.path_url.split("?", 1)[0] == mapped.path, (url, prepared.path_url)
    assert parse_url(url).path == mapped.path, url
    wire = parse_url(prepared.url)
    assert wire.path == mapped.path, (url, prepared.url)
    assert ((wire.host or "").lower(), wire.port or 443) == _origin_of(endpoints, mapped), url
    assert wire.auth is None and wire.fragment is None


@FAST
@given(request=requests_to_try)
def test_every_accepted_url_is_sent_exactly_as_decided(request):
    method, url, endpoints = request
    mapped = _mapped(method, url, endpoints)
    if mapped is None:
        return
    _assert_sent_as_decided(method, url, endpoints, mapped)


_AUTHORITY = [
    "management.azure.com", "MANAGEMENT.azure.com", "management.azure.com.", "management.azure.com:443",
    "management.azure.com:8443", "management.azure.com@evil.example", "evil.example@management.azure.com",
    "management.azure.com\\@evil.example", "evil.example\\.management.azure.com", "management.azure.com%2F@evil",
    "management\u3002azure.com", "management.azure.com:443:443", "management.azure.com%00", "[::1]",
    "kv-ops.vault.azure.net", "kv-ops.vault.azure.net.evil.example", "kv.ops.vault.azure.net", "KV-OPS.vault.azure.net",
    "evil.example#@kv-ops.vault.azure.net", "kv-ops.vault.azure.net:443", "kv-ops.vault.azure.net:444",
    "x@kv-ops.vault.azure.net", "kv-ops%2Evault.azure.net", "kv_ops.vault.azure.net", "-kv.vault.azure.net",
]


@SOME
@given(
    scheme=st.sampled_from(["https", "HTTPS", "http", "https:", ""]),
    slashes=st.sampled_from(["//", "///", "/", "\\\\", "/\\"]),
    authority=st.lists(st.one_of(st.sampled_from(_AUTHORITY), hostile_piece), min_size=1, max_size=3).map("".join),
    path=st.sampled_from(["/subscriptions", f"{S}/resourcegroups", "/secrets/db-password", "/secrets"]),
)
def test_no_authority_trick_moves_the_host_the_policy_decided(scheme, slashes, authority, path):
    url = f"{scheme}:{slashes}{authority}{path}"
    for method in ("GET", "POST"):
        mapped = _mapped(method, url, AZ)
        if mapped is not None:
            _assert_sent_as_decided(method, url, AZ, mapped)


class _Capture(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        with self.lock:
            self.seen.append((self.command, self.path))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_PATCH = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:  # quiet
        pass


class _Records:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any], *, durable: bool = True) -> dict[str, Any]:
        self.records.append(record)
        return {**record, "seq": len(self.records)}


@pytest.fixture(scope="module")
def wire():
    """A local HTTP server that records request lines, behind the real guarded transport."""
    import requests
    from azure.core.pipeline import Pipeline
    from azure.core.pipeline.transport import RequestsTransport

    from azure_agent_mcp.policy import Guard

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    endpoints = Endpoints(origin, origin + "/vaults/{vault}")
    allow_all = parse_policy({"Name": "allow-all", "Actions": ["*"], "DataActions": ["*"], "AssignableScopes": ["/"]},
                             source="allow-all.json")
    records = _Records()
    session = requests.Session()
    session.trust_env = False
    transport = Guard(allow_all, endpoints, audit=records).transport(RequestsTransport(session=session, session_owner=False))
    pipeline = Pipeline(transport=transport, policies=[])
    try:
        yield origin, endpoints, pipeline, records
    finally:
        transport.close()
        session.close()
        server.shutdown()
        server.server_close()


@SOME
@given(request=requests_to_try)
def test_through_the_guarded_transport_the_request_line_carries_the_decided_path(wire, request):
    from azure.core.rest import HttpRequest

    from azure_agent_mcp.policy import PolicyDeniedError

    origin, endpoints, pipeline, records = wire
    method, url, template_endpoints = request
    parts = urlsplit(url)
    if template_endpoints is AZ and parts.hostname and parts.hostname.endswith(".vault.azure.net"):
        local = origin + "/vaults/kv-ops" + url[len(f"{parts.scheme}://{parts.netloc}"):]
    else:
        local = origin + url[len(f"{parts.scheme}://{parts.netloc}"):]
    mapped = _mapped(method, local, endpoints)
    with _Capture.lock:
        _Capture.seen.clear()
    del records.records[:]
    try:
        pipeline.run(HttpRequest(method, local))
    except PolicyDeniedError:
        from azure_agent_mcp.policy.body_scopes import is_body_scoped

        # allow-all denies only what it cannot map, and a body-scoped request (a Resource Graph query)
        # sent without a body to read its scopes from
        assert mapped is None or is_body_scoped(mapped.operation), local
        assert _Capture.seen == []
        return
    assert mapped is not None, local
    assert len(_Capture.seen) == 1, (local, _Capture.seen)
    verb, target = _Capture.seen[0]
    assert verb == method.upper()
    assert target.split("?", 1)[0] == mapped.path, (local, target)
    assert [r["path"] for r in records.records if r["kind"] == "intent"] == [mapped.path]


# -- b. decoded once, the segments are the ones decided; a hostile name stays a name -------------------


def _arm_decode(path: str, *, vault: bool = False) -> list[str]:
    """What ARM (or Key Vault) makes of a path: split on '/', each segment percent-decoded once.

    Key Vault reads one trailing '/' as absent (its SDK writes ``/secrets/{name}/``); the guard
    admits exactly that one, on the vault plane only.
    """
    if vault and path.endswith("/") and path != "/":
        path = path[:-1]
    return [unquote(raw, errors="strict") for raw in path[1:].split("/")] if path != "/" else []


@FAST
@given(request=requests_to_try)
def test_decoding_each_accepted_segment_once_gives_what_was_decided(request):
    method, url, endpoints = request
    mapped = _mapped(method, url, endpoints)
    if mapped is None:
        return
    decoded = _arm_decode(mapped.path, vault=mapped.plane == "keyvault")
    for seg in decoded:
        assert seg not in ("", ".", "..") and "/" not in seg and "\\" not in seg and "%" not in seg, (url, seg)
        assert all(0x20 <= ord(c) < 0x7F for c in seg), (url, seg)
        # a second decoding (a proxy, a framework) changes nothing: no double-encoding survives
        assert unquote(seg) == seg
        assert unquote(quote_segment(seg)) == seg
    verb = method.upper()
    if mapped.plane == "arm":
        again = map_arm(verb, decoded)
    else:
        vault_at = 1 if endpoints is SANDBOX else -1
        again = map_vault(verb, mapped.vault, decoded[vault_at + 1:] if vault_at >= 0 else decoded)
        if vault_at >= 0:
            assert decoded[vault_at] == mapped.vault
    assert (again.operation, again.scope) == (mapped.operation, mapped.scope), url


PLAIN = "plainname0slot"
# (method, origin, endpoints, path with {slot} where a name stands)
SLOTS: list[tuple[str, str, Endpoints, str]] = [
    ("GET", "https://management.azure.com", AZ, "/subscriptions/{slot}"),
    ("GET", "https://management.azure.com", AZ, "/subscriptions/{slot}/resourcegroups"),
    ("GET", "https://management.azure.com", AZ, f"{S}/resourceGroups/{{slot}}"),
    ("PUT", "https://management.azure.com", AZ, f"{S}/resourceGroups/{{slot}}"),
    ("GET", "https://management.azure.com", AZ, f"{S}/resourceGroups/{{slot}}/resources"),
    ("GET", "https://management.azure.com", AZ, f"{S}/resourceGroups/{{slot}}/providers/Microsoft.Storage/storageAccounts/stapp"),
    ("GET", "https://management.azure.com", AZ, f"{G}/providers/Microsoft.Storage/storageAccounts/{{slot}}"),
    ("DELETE", "https://management.azure.com", AZ, f"{G}/providers/Microsoft.Storage/storageAccounts/{{slot}}"),
    ("POST", "https://management.azure.com", AZ, f"{G}/providers/Microsoft.Storage/storageAccounts/{{slot}}/listKeys"),
    ("GET", "https://management.azure.com", AZ, f"{ACCOUNT}/blobServices/{{slot}}/containers"),
    ("PUT", "https://management.azure.com", AZ, f"{ACCOUNT}/blobServices/default/containers/{{slot}}"),
    ("GET", "https://management.azure.com", AZ, f"{G}/providers/Microsoft.Web/sites/{{slot}}/config/appsettings"),
    ("POST", "https://management.azure.com", AZ, f"{G}/providers/Microsoft.Web/sites/{{slot}}/config/appsettings/list"),
    ("GET", "https://management.azure.com", AZ, f"{G}/providers/Microsoft.Storage/storageAccounts/{{slot}}/providers/Microsoft.Authorization/roleAssignments"),
    ("POST", "https://management.azure.com", AZ, f"{G}/providers/Microsoft.OperationalInsights/workspaces/{{slot}}/api/query"),
    ("PUT", "https://management.azure.com", AZ, f"{S}/tagNames/{{slot}}"),
    ("GET", "https://kv-ops.vault.azure.net", AZ, "/secrets/{slot}"),
    ("GET", "https://kv-ops.vault.azure.net", AZ, "/secrets/{slot}/versions"),
    ("PUT", "https://kv-ops.vault.azure.net", AZ, "/secrets/{slot}"),
    ("POST", "https://kv-ops.vault.azure.net", AZ, "/keys/{slot}/decrypt"),
    ("GET", "https://127.0.0.1:8443", SANDBOX, "/vaults/{slot}/secrets"),
    ("GET", "https://127.0.0.1:8443", SANDBOX, "/vaults/{slot}/secrets/db-password"),
    ("GET", "https://127.0.0.1:8443", SANDBOX, "/vaults/kv-ops/secrets/{slot}"),
]


@settings(max_examples=400, deadline=None, suppress_health_check=_HEALTH)
@given(slot=st.sampled_from(SLOTS), value=st.one_of(hostile_segment, passable_segment, st.sampled_from(NORMAL)))
def test_a_hostile_value_where_a_name_stands_is_refused_or_is_that_name(slot, value):
    """A value written where one path segment stands: encodings, dots, escapes, keywords, non-ASCII.

    A raw '/', '?' or '#' is URL syntax, not part of a segment: such a URL has another path (or a
    query), which property a checks is decided and sent as it stands; tools never let one through
    (property c).
    """
    method, origin, endpoints, template = slot
    if set(value) & set("/?#"):
        return
    plain = map_request(method, origin + template.format(slot=PLAIN), endpoints)
    mapped = _mapped(method, origin + template.format(slot=value), endpoints)
    if mapped is None:
        return
    if value == "" and template.endswith("{slot}") and mapped.plane == "keyvault":
        # an empty last segment is Key Vault's one admitted trailing '/': the request is the path
        # without it (``/secrets/`` lists, as ``/secrets`` does), decided and sent as such
        without = map_request(method, origin + template.format(slot="")[:-1], endpoints)
        assert (mapped.operation, mapped.scope) == (without.operation, without.scope)
        return
    assert (mapped.operation, mapped.data_action, mapped.plane) == (plain.operation, plain.data_action, plain.plane), value
    name = _arm_decode("/" + value)
    assert len(name) == 1, value  # the value added no segment
    assert mapped.path.count("/") == plain.path.count("/")
    if mapped.plane == "keyvault" and plain.vault == PLAIN:
        assert mapped.vault == name[0]
        assert mapped.scope == plain.scope.replace(PLAIN, name[0])
    else:
        assert mapped.scope == plain.scope.replace(PLAIN, name[0]), value


# -- c. tool arguments -------------------------------------------------------------------------------

TOOLS = {tool.name: tool for tool in catalog()}
PLANNED_TOOLS = {name for name, tool in TOOLS.items() if tool.plan is not None}
COVERED = {"subscription_list", "group_list", "group_create", "resource_list", "resource_get", "resource_delete",
           "arm_request", "keyvault_secret_list", "keyvault_secret_get", "storage_account_list",
           "storage_account_keys", "role_assignment_list", "role_definition_list", "deployment_list",
           "deployment_get", "resource_graph_query", "log_query", "activity_log_list", "metrics_list",
           "metrics_get"}


def test_every_tool_with_a_plan_is_covered_here():
    assert PLANNED_TOOLS == COVERED


@pytest.fixture(scope="module")
def runtime(sandbox, tmp_path_factory):
    from server_helpers import make_runtime

    built = make_runtime(sandbox, tmp_path_factory.mktemp("guard-props") / "audit.jsonl")
    yield built
    built.close()


@pytest.fixture(scope="module")
def azure(runtime) -> AzureSession:
    """The sandbox runtime's own AzureSession (plan() sends nothing; api_version is passed explicitly)."""
    return runtime.azure_for(runtime.default_session)


@pytest.fixture(scope="module")
def azure_public(azure) -> AzureSession:
    """The same session against the public cloud's endpoints: vaults as host names."""
    env = public_cloud(subscription=azure.env.default_subscription)
    return AzureSession(env, azure.session, None, azure.policy, [], None)


@pytest.fixture
def sends_nothing(sandbox):
    before = sandbox.last_seq()
    yield
    assert sandbox.requests(since=before) == [], "plan() sent a request"


def _plan(azure: AzureSession, tool: str, **arguments: Any) -> list[tuple[str, str, Any]] | None:
    """The planned requests with their mapping; None when the tool refuses the arguments."""
    try:
        planned = TOOLS[tool].plan(azure, **arguments)
    except ToolInputError:
        return None
    endpoints = Endpoints.from_environment(azure.env)
    out = []
    for request in planned:
        try:
            out.append((request.method, request.url, map_request(request.method, request.url, endpoints)))
        except UnmappableRequestError as exc:
            raise AssertionError(f"{tool}({arguments!r}) planned a request the guard cannot map: {exc}") from None
    return out


def _arm_host(azure: AzureSession) -> str:
    return urlsplit(azure.env.arm_endpoint).netloc.lower()


def _one(planned: list[tuple[str, str, Any]], azure: AzureSession, method: str) -> Any:
    assert len(planned) == 1, planned
    sent_method, url, mapped = planned[0]
    assert sent_method == method
    parts = urlsplit(url)
    if mapped.plane == "arm":
        assert parts.netloc.lower() == _arm_host(azure), url
    return mapped


# reference grammar of what each argument may be (written here, independently of tools/arguments.py)
def ref_guid(value: str) -> bool:
    return re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", value) is not None


def ref_group(value: str) -> bool:
    return 1 <= len(value) <= 90 and all(c in string.ascii_letters + string.digits + "-_.()" for c in value) \
        and not value.endswith(".")


def ref_name(value: str) -> bool:
    return 1 <= len(value) <= 260 and value not in (".", "..") and all(0x20 <= ord(c) < 0x7F for c in value) \
        and not set(value) & set("/\\?#%")


def ref_vault(value: str) -> bool:
    return 3 <= len(value) <= 24 and value[0] in string.ascii_letters and value[-1] in string.ascii_letters + string.digits \
        and all(c in string.ascii_letters + string.digits + "-" for c in value) and "--" not in value


def ref_resource_id(value: str) -> tuple[str, str] | None:
    """(namespace, type chain) of a well-formed ARM id; None when it is not one."""
    segs = value[1:].split("/") if value.startswith("/") else None
    if not segs or len(segs) < 2 or segs[0].lower() != "subscriptions" or not ref_guid(segs[1]):
        return None
    if not all(ref_name(s) for s in segs):
        return None
    pos, namespace, chain = 2, "Microsoft.Resources", "subscriptions"
    if len(segs) > 2 and segs[2].lower() == "resourcegroups":
        if len(segs) < 4 or not ref_group(segs[3]):
            return None
        pos, chain = 4, "subscriptions/resourceGroups"
    while pos < len(segs):
        if segs[pos].lower() != "providers" or pos + 1 >= len(segs):
            return None
        namespace = segs[pos + 1]
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)+", namespace):
            return None
        pos += 2
        types = []
        while pos < len(segs) and segs[pos].lower() != "providers":
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", segs[pos]) or pos + 1 >= len(segs):
                return None
            types.append(segs[pos])
            pos += 2
        if not types:
            return None
        chain = "/".join(types)
    return namespace, chain


def _operation(ref: tuple[str, str], verb: str) -> str:
    namespace, chain = ref
    if namespace == "Microsoft.Resources" and chain.startswith("subscriptions"):
        return f"Microsoft.Resources/{chain}/{verb}"
    return f"{namespace}/{chain}/{verb}"


guids = st.one_of(
    st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), st.just(SUB),
    st.uuids().map(lambda u: u.hex), st.uuids().map(lambda u: "{" + str(u) + "}"),
)
VALID = [SUB, "rg-app", "kv-ops", "stapp", "db-password"]
# what slips past a regex anchored with '$' (it matches before a final newline) or a prefix check
EDGES = ["\n", "\r\n", "\r", " ", "\t", "/", "/.", "/..", "//", "/x", "?x=1", "#f", "%2F", "%0A", "\x00", "é",
         "\u3002", "\\"]
hostile_value = st.one_of(
    hostile_segment,
    st.builds(lambda a, b: a + b, st.sampled_from(VALID), hostile_segment),
    st.builds(lambda a, b: a + b, hostile_segment, st.sampled_from(VALID)),
    st.builds(lambda a, b: a + b, st.sampled_from(VALID), st.sampled_from(EDGES)),
    st.builds(lambda a, b: a + b, st.sampled_from(EDGES), st.sampled_from(VALID)),
    st.text(max_size=12),
)
plain_names = st.sampled_from(["rg-app", "stapp", "a", "x.y", "a(1)", "providers", "resources", "a b", "~x"])
names = st.one_of(plain_names, hostile_value)


@st.composite
def resource_ids(draw: st.DrawFn) -> str:
    """ARM ids built structurally, a hostile value at some positions (about one in six), sometimes
    malformed (a segment dropped or replaced) or wrapped (spaces, slashes, a query, a fragment)."""

    def pick(valid: Any) -> str:
        return draw(hostile_value if draw(st.integers(0, 5)) == 0 else valid)

    segs = ["subscriptions", pick(st.one_of(st.uuids().map(str), st.just(SUB)))]
    if draw(st.booleans()):
        segs += [draw(st.sampled_from(["resourceGroups", "resourcegroups", "RESOURCEGROUPS"])), pick(plain_names)]
    for _ in range(draw(st.integers(0, 2))):
        segs += ["providers", pick(st.sampled_from(["Microsoft.Storage", "Microsoft.Web", "microsoft.keyvault",
                                                    "Microsoft.Authorization"]))]
        for _ in range(draw(st.integers(1, 3))):
            segs += [pick(st.sampled_from(["storageAccounts", "sites", "vaults", "config", "blobServices"])), pick(plain_names)]
    if draw(st.integers(0, 5)) == 0:  # drop or change a segment: a malformed structure
        at = draw(st.integers(0, len(segs) - 1))
        if draw(st.booleans()):
            del segs[at]
        else:
            segs[at] = draw(st.one_of(hostile_value, guids))
    value = "/" + "/".join(segs)
    if draw(st.integers(0, 3)) == 0:
        value = draw(st.sampled_from(["", " ", "/"])) + value + draw(st.sampled_from(["", "/", "//", " ", "?x=1", "#f"]))
    return value


api_versions = st.one_of(st.just("2023-05-01"), hostile_value)


def _subscriptions_of(azure: AzureSession) -> str:
    return azure.env.default_subscription


@FAST
@given(subscription=st.one_of(guids, hostile_value))
def test_group_list_subscription(azure, sends_nothing, subscription):
    planned = _plan(azure, "group_list", subscription=subscription)
    if planned is None:
        return
    sub = subscription or _subscriptions_of(azure)  # empty: the configured default, as documented
    assert ref_guid(sub), subscription
    mapped = _one(planned, azure, "GET")
    assert mapped.operation == "Microsoft.Resources/subscriptions/resourceGroups/read"
    assert mapped.scope == f"/subscriptions/{sub}"
    assert mapped.path == f"/subscriptions/{sub}/resourcegroups"


@FAST
@given(
    tool=st.sampled_from(["resource_list", "storage_account_list"]),
    subscription=st.one_of(st.none(), guids, hostile_value),
    resource_group=st.one_of(st.none(), st.sampled_from(["rg-app", "a(b)", "resources", "providers", "x."]), hostile_value),
)
def test_listing_subscription_and_group(azure, sends_nothing, tool, subscription, resource_group):
    planned = _plan(azure, tool, subscription=subscription, resource_group=resource_group)
    if planned is None:
        return
    sub = subscription or _subscriptions_of(azure)
    assert ref_guid(sub), sub
    mapped = _one(planned, azure, "GET")
    if resource_group:
        assert ref_group(resource_group), resource_group
        assert mapped.operation == "Microsoft.Resources/subscriptions/resourceGroups/resources/read"
        assert mapped.scope == f"/subscriptions/{sub}/resourceGroups/{resource_group}"
        assert mapped.path == f"/subscriptions/{sub}/resourceGroups/{resource_group}/resources"
    else:
        assert mapped.operation == "Microsoft.Resources/subscriptions/resources/read"
        assert mapped.scope == f"/subscriptions/{sub}"


@FAST
@given(name=names, subscription=st.one_of(st.none(), guids, hostile_value), location=hostile_value)
def test_group_create_name_and_subscription(azure, sends_nothing, name, subscription, location):
    planned = _plan(azure, "group_create", name=name, location=location, subscription=subscription)
    if planned is None:
        return
    sub = subscription or _subscriptions_of(azure)
    assert ref_guid(sub) and ref_group(name), (sub, name)
    mapped = _one(planned, azure, "PUT")
    assert mapped.operation == "Microsoft.Resources/subscriptions/resourceGroups/write"
    assert mapped.scope == f"/subscriptions/{sub}/resourceGroups/{name}"


@FAST
@given(tool=st.sampled_from(["resource_get", "resource_delete"]), resource_id=resource_ids(), api_version=api_versions)
def test_resource_get_and_delete_ids(azure, sends_nothing, tool, resource_id, api_version):
    ref = ref_resource_id(resource_id)
    if tool == "resource_delete" and ref is not None and ref[1] == "subscriptions":
        return  # ARM defines no DELETE on a subscription: the guard's to refuse (the next test)
    planned = _plan(azure, tool, resource_id=resource_id, api_version=api_version)
    assert (planned is not None) == (ref is not None), resource_id  # and every well-formed id is taken
    if planned is None:
        return
    method, verb = ("GET", "read") if tool == "resource_get" else ("DELETE", "delete")
    assert len(planned) == 1 and planned[0][0] == method
    mapped = _one(planned, azure, method)
    assert mapped.operation.lower() == _operation(ref, verb).lower(), (resource_id, mapped)
    assert mapped.scope == resource_id
    assert _arm_decode(mapped.path) == resource_id[1:].split("/")
    _, _, sent_query = planned[0][1].partition("?")
    assert sent_query == ("api-version=" + quote(api_version, safe="") if api_version else "")


def test_resource_delete_of_a_subscription_is_left_to_the_guard(azure):
    """A subscription id parses as a resource id, but ARM has no DELETE on it: the guard refuses it unmapped."""
    from azure_agent_mcp.policy import Effect, decide_request

    planned = TOOLS["resource_delete"].plan(azure, resource_id=S, api_version="2022-09-01")
    decision, mapped = decide_request(azure.policy, Endpoints.from_environment(azure.env), planned[0].method, planned[0].url)
    assert mapped is None and decision.effect is Effect.DENY


@FAST
@given(resource_id=resource_ids())
@example(resource_id=f"{S}/resourceGroups/providers")  # once crashed: a group named 'providers'
@example(resource_id=f"{S}/providers/Microsoft.Storage/storageAccounts/providers")
@example(resource_id=f"{S}/resourceGroups/g/providers/Microsoft.Web/sites/providers/config/x")
def test_storage_account_keys_id(azure, sends_nothing, resource_id):
    planned = _plan(azure, "storage_account_keys", resource_id=resource_id)
    if planned is None:
        return
    ref = ref_resource_id(resource_id)
    assert ref is not None and f"{ref[0]}/{ref[1]}".lower() == "microsoft.storage/storageaccounts", resource_id
    mapped = _one(planned, azure, "POST")
    assert mapped.operation == "Microsoft.Storage/storageAccounts/listKeys/action"
    assert mapped.scope == resource_id


@FAST
@given(scope=resource_ids())
def test_role_assignment_list_scope(azure, sends_nothing, scope):
    planned = _plan(azure, "role_assignment_list", scope=scope)
    if planned is None:
        return
    named = scope.strip()
    named = named.rstrip("/") if named.endswith("/") and named != "/" else named
    assert ref_resource_id(named) is not None, scope
    mapped = _one(planned, azure, "GET")
    assert mapped.operation == "Microsoft.Authorization/roleAssignments/read"
    assert mapped.scope == named



times = st.one_of(st.none(), st.sampled_from(["2026-11-30T08:00:00Z", "PT1H", "P1D"]), hostile_value)


@FAST
@given(subscription=st.one_of(st.none(), guids, hostile_value),
       resource_group=st.one_of(st.none(), st.just("rg-app"), hostile_value),
       resource_id=st.one_of(st.none(), resource_ids()), caller=st.one_of(st.none(), hostile_value),
       status=st.one_of(st.none(), st.sampled_from(["Failed", "Succeeded"]), hostile_value),
       operation=st.one_of(st.none(), hostile_value), start=times, timespan=times)
def test_activity_log_list_arguments(azure, sends_nothing, subscription, resource_group, resource_id, caller, status,
                                     operation, start, timespan):
    planned = _plan(azure, "activity_log_list", subscription=subscription, resource_group=resource_group,
                    resource_id=resource_id, caller=caller, status=status, operation=operation, start=start,
                    timespan=timespan)
    if planned is None:
        return
    sub = subscription or _subscriptions_of(azure)
    assert ref_guid(sub), sub
    if resource_group:
        assert ref_group(resource_group), resource_group
    if resource_id is not None:
        assert ref_resource_id(resource_id) is not None, resource_id
    mapped = _one(planned, azure, "GET")
    assert mapped.operation.lower() == "microsoft.insights/eventtypes/values/read"
    assert mapped.scope == f"/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management"
    assert mapped.path == f"/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values"


@FAST
@given(tool=st.sampled_from(["metrics_list", "metrics_get"]), resource_id=resource_ids(),
       names=st.one_of(st.none(), st.lists(hostile_value, max_size=2)), timespan=times,
       interval=st.one_of(st.none(), st.just("PT5M"), hostile_value))
def test_metrics_resource_id_and_query_arguments(azure, sends_nothing, tool, resource_id, names, timespan, interval):
    arguments: dict[str, Any] = {"resource_id": resource_id}
    if tool == "metrics_get":
        arguments.update(metric_names=names, timespan=timespan, interval=interval)
    planned = _plan(azure, tool, **arguments)
    if planned is None:
        return
    ref = ref_resource_id(resource_id)
    assert ref is not None and ref[0] != "Microsoft.Resources", resource_id
    mapped = _one(planned, azure, "GET")
    leaf = "metricDefinitions" if tool == "metrics_list" else "metrics"
    assert mapped.operation == f"Microsoft.Insights/{leaf}/read"
    assert mapped.scope == resource_id
    assert _arm_decode(mapped.path) == resource_id[1:].split("/") + ["providers", "Microsoft.Insights", leaf]


@FAST
@given(data=st.data())
def test_a_sealed_activity_log_link_only_continues_its_own_listing(azure, sends_nothing, data):
    sub = azure.env.default_subscription
    listing = f"/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values"
    origin = data.draw(st.sampled_from([azure.env.arm_endpoint, "https://evil.example", azure.env.arm_endpoint + ":1",
                                        azure.env.arm_endpoint.replace("https", "http")]))
    path = data.draw(st.one_of(st.just(listing), st.builds(lambda h: listing + h, hostile_segment),
                               st.builds(lambda h: listing.replace("values", h), hostile_segment),
                               st.sampled_from([f"/subscriptions/{sub}/resources", f"{listing}/../../.."])))
    link = origin + path + data.draw(st.sampled_from(["", "?$skiptoken=abc", "?a=/../b"]))
    offset = data.draw(st.integers(0, 300))
    token = tokens.seal(link, tool="activity_log_list", session_id=azure.session.id, scope=listing, offset=offset)
    try:
        planned = TOOLS["activity_log_list"].plan(azure, continuation=token)
    except ToolInputError:
        return
    url = planned[0].url
    try:
        mapped = map_request("GET", url, Endpoints.from_environment(azure.env))
    except UnmappableRequestError:
        assert set(url) & set("\t\r\n"), url
        return
    assert urlsplit(url).netloc.lower() == _arm_host(azure), url
    assert mapped.path.lower() == listing.lower()
    assert mapped.operation.lower() == "microsoft.insights/eventtypes/values/read"
def ref_deployment(value: str) -> bool:
    return 1 <= len(value) <= 64 and all(c in string.ascii_letters + string.digits + "-_.()" for c in value) \
        and value not in (".", "..")


def _deployment_scope(sub: str, group: str | None) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}" if group else f"/subscriptions/{sub}"


groups = st.one_of(st.none(), st.sampled_from(["rg-app", "a(b)", "deployments", "providers", "x."]), hostile_value)


@FAST
@given(subscription=st.one_of(st.none(), guids, hostile_value), resource_group=groups,
       state=st.one_of(st.none(), st.sampled_from(["Failed", "Succeeded"]), hostile_value))
def test_deployment_list_scope(azure, sends_nothing, subscription, resource_group, state):
    planned = _plan(azure, "deployment_list", subscription=subscription, resource_group=resource_group, state=state)
    if planned is None:
        return
    sub = subscription or _subscriptions_of(azure)
    assert ref_guid(sub) and (not resource_group or ref_group(resource_group)), (sub, resource_group)
    assert state is None or re.fullmatch(r"[A-Za-z]{1,40}", state), state  # it ends up inside a $filter
    mapped = _one(planned, azure, "GET")
    assert mapped.operation == "Microsoft.Resources/deployments/read"
    assert mapped.scope == _deployment_scope(sub, resource_group)


@FAST
@given(name=st.one_of(st.sampled_from(["dep1", "a(1)", "x.y_z", "operations", "a" * 64, "a" * 65]), hostile_value),
       subscription=st.one_of(st.none(), guids), resource_group=groups, operations=st.booleans())
def test_deployment_get_name_and_scope(azure, sends_nothing, name, subscription, resource_group, operations):
    planned = _plan(azure, "deployment_get", name=name, subscription=subscription, resource_group=resource_group,
                    operations=operations)
    if planned is None:
        return
    sub = subscription or _subscriptions_of(azure)
    assert ref_deployment(name) and (not resource_group or ref_group(resource_group)), (name, resource_group)
    deployment = _deployment_scope(sub, resource_group) + "/providers/Microsoft.Resources/deployments/" + name
    assert [m for m, _, _ in planned] == ["GET"] * (2 if operations else 1)
    got = planned[0][2]
    assert (got.operation, got.scope) == ("Microsoft.Resources/deployments/read", deployment)
    if operations:  # a group's operations go by ARM's older route, checked on the deployment's id
        listed = planned[1][2]
        expected = ("Microsoft.Resources/subscriptions/resourceGroups/deployments/operations/read" if resource_group
                    else "Microsoft.Resources/deployments/operations/read")
        assert (listed.operation, listed.scope) == (expected, deployment)
        declared = {op.operation for op in TOOLS["deployment_get"].operations}
        assert {got.operation, listed.operation} <= declared


READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


@FAST
@given(scope=st.one_of(st.none(), st.just("/"), resource_ids()),
       role_name=st.one_of(st.none(), st.sampled_from(["Reader", "O'Brien's role", "Key Vault Secrets User"]),
                           hostile_value),
       role_id=st.one_of(st.none(), st.sampled_from([READER, READER.upper(), f"{S}/providers/Microsoft.Authorization/"
                                                     f"roleDefinitions/{READER}", f"/providers/Microsoft.Authorization/"
                                                     f"roleDefinitions/{READER}"]),
                         resource_ids(), hostile_value))
def test_role_definition_list_scope_name_and_id(azure, sends_nothing, scope, role_name, role_id):
    planned = _plan(azure, "role_definition_list", scope=scope, role_name=role_name, role_id=role_id)
    if planned is None:
        return
    assert not (role_name and role_id)
    mapped = _one(planned, azure, "GET")
    assert mapped.operation == "Microsoft.Authorization/roleDefinitions/read"
    query = dict(parse_qsl(urlsplit(planned[0][1]).query))
    if role_id:
        named_id = role_id.strip()
        guid = named_id.rsplit("/", 1)[-1]
        assert ref_guid(guid) and mapped.path.endswith("/roleDefinitions/" + guid.lower()), role_id
        assert "$filter" not in query
        if named_id.startswith("/"):  # a full id names its own scope; the scope argument does not move it
            assert mapped.scope == named_id[: -len(guid)] + guid.lower()
        return
    named = scope if scope else _deployment_scope(_subscriptions_of(azure), None)
    named = named.strip().rstrip("/") or "/"
    assert named == "/" or ref_resource_id(named) is not None, scope
    assert mapped.scope == named
    if role_name:  # the name stands quoted inside the filter, its quotes doubled
        assert query["$filter"] == "roleName eq '" + role_name.replace("'", "''") + "'"
@FAST
@given(
    subscriptions=st.one_of(st.none(), st.lists(st.one_of(guids, hostile_value), max_size=3)),
    management_group=st.one_of(st.none(), st.sampled_from(["mg-platform", "a(1)", "x.y"]), hostile_value),
)
def test_resource_graph_query_scopes(azure, sends_nothing, subscriptions, management_group):
    """The planned query is decided at exactly the subscriptions (or the management group) the arguments name."""
    from azure_agent_mcp.policy import decide_request

    try:
        planned = TOOLS["resource_graph_query"].plan(azure, query="Resources | count", subscriptions=subscriptions,
                                                     management_group=management_group)
    except ToolInputError:
        return
    (request,) = planned
    assert request.method == "POST"
    mapped = map_request(request.method, request.url, Endpoints.from_environment(azure.env))
    assert mapped.operation == "Microsoft.ResourceGraph/resources/read"
    assert mapped.path == "/providers/Microsoft.ResourceGraph/resources"
    _, decided = decide_request(azure.policy, Endpoints.from_environment(azure.env), request.method, request.url,
                                request.body)
    if management_group is not None:
        assert not subscriptions and re.fullmatch(r"[A-Za-z0-9_().-]{1,90}", management_group), management_group
        assert decided.scopes == (f"/providers/Microsoft.Management/managementGroups/{management_group}",)
        return
    named = subscriptions or [_subscriptions_of(azure)]  # none or empty: the configured default, as documented
    assert all(ref_guid(s) for s in named), named
    assert decided.scopes == tuple(dict.fromkeys(f"/subscriptions/{s.lower()}" for s in named))


vault_values = st.one_of(
    st.sampled_from(["kv-ops", "KV-Ops", "kv", "kv--x", "1kv", "kv-", "a" * 24, "a" * 25]),
    hostile_value,
    st.builds(lambda h, tail: f"https://{h}.vault.azure.net{tail}",
              st.one_of(st.just("kv-ops"), hostile_segment),
              st.sampled_from(["", "/", "//", "/secrets", "?x=1", "#f", ":443", ".evil.example", "/../kv-b"])),
)


def _sandbox_vault_urls(azure: AzureSession) -> Any:
    template = azure.env.keyvault_url_template
    return st.builds(lambda h, tail: template.replace("{vault}", h) + tail,
                     st.one_of(st.just("kv-ops"), hostile_segment),
                     st.sampled_from(["", "/", "//", "/secrets", "?x=1", "#f", "/../kv-b", "/kv-b", "%2F..%2Fkv-b"]))


def _vault_named(value: str, template: str) -> str | None:
    """The vault a value names: a name, or a URL exactly the template's for one name."""
    if not value.lower().startswith("https://"):
        return value if ref_vault(value) else None
    prefix, suffix = template.split("{vault}")
    bare = value.rstrip("/")
    if not (bare.lower().startswith(prefix.lower()) and bare.lower().endswith(suffix.lower())):
        return None
    name = bare[len(prefix): len(bare) - len(suffix)]
    return name if ref_vault(name) else None


def _check_vault_plan(azure, vault, name):
    tool = "keyvault_secret_list" if name is None else "keyvault_secret_get"
    arguments = {"vault": vault} if name is None else {"vault": vault, "name": name}
    planned = _plan(azure, tool, **arguments)
    if planned is None:
        return
    template = azure.env.keyvault_url_template
    named = _vault_named(vault, template)
    assert named is not None, vault
    mapped = _one(planned, azure, "GET")
    assert mapped.plane == "keyvault" and mapped.data_action
    assert mapped.vault.lower() == named.lower()
    assert urlsplit(planned[0][1]).netloc.lower() == urlsplit(template.replace("{vault}", named)).netloc.lower()
    root = f"/providers/Microsoft.KeyVault/vaults/{mapped.vault}"
    if name is None:
        assert (mapped.operation, mapped.scope) == ("Microsoft.KeyVault/vaults/secrets/readMetadata/action", root)
    else:
        assert re.fullmatch(r"[0-9A-Za-z-]{1,127}", name), name
        assert (mapped.operation, mapped.scope) == ("Microsoft.KeyVault/vaults/secrets/getSecret/action",
                                                    f"{root}/secrets/{name}")


secret_names = st.one_of(st.sampled_from(["db-password", "a", "A-1", "x" * 127, "x" * 128]), hostile_value,
                         st.builds(lambda a, b: a + b, st.just("db-password"), hostile_piece))


@FAST
@given(data=st.data(), name=st.one_of(st.none(), secret_names))
def test_keyvault_vault_and_name_in_the_sandbox(azure, sends_nothing, data, name):
    vault = data.draw(st.one_of(vault_values, _sandbox_vault_urls(azure)))
    _check_vault_plan(azure, vault, name)


@FAST
@given(vault=vault_values, name=st.one_of(st.none(), secret_names))
@example(vault="kv-ops", name="db-password\n")  # once passed: '$' matches before a final newline
@example(vault="https://[.vault.azure.net", name=None)  # once crashed: urlsplit's ValueError escaped
@example(vault="https://\uff0f.vault.azure.net", name=None)
def test_keyvault_vault_and_name_in_the_public_cloud(azure_public, vault, name):
    _check_vault_plan(azure_public, vault, name)


def _path_and_query(url: str) -> str:
    after_scheme = url.split("://", 1)[1]
    return "/" + after_scheme.split("/", 1)[1] if "/" in after_scheme else "/"


arm_paths = st.one_of(
    mutated().map(lambda request: _path_and_query(request[1])),
    st.builds(lambda a, b: a + b, st.sampled_from(["", "/", "//", " ", "https://evil.example", "https://127.0.0.1:8443",
                                                   "@evil.example", "\\"]),
              st.lists(segment, min_size=1, max_size=6).map("/".join)),
)


@FAST
@given(method=st.sampled_from(["GET", "PUT", "PATCH", "POST", "DELETE"]), path=arm_paths,
       api_version=st.one_of(st.none(), api_versions))
def test_arm_request_path_is_decided_as_written(azure, sends_nothing, method, path, api_version):
    try:
        planned = TOOLS["arm_request"].plan(azure, method=method, path=path, api_version=api_version)
    except ToolInputError:
        return
    assert len(planned) == 1
    url = planned[0].url
    written = path.strip()
    assert url.startswith(azure.env.arm_endpoint.rstrip("/") + written), (path, url)
    assert urlsplit(url).netloc.lower() == _arm_host(azure)
    try:
        mapped = map_request(method, url, Endpoints.from_environment(azure.env))
    except UnmappableRequestError as exc:
        # arm_request is raw ARM: a shape ARM does not define, or a query the guard will not send,
        # is the guard's to refuse; a path arm_path passed is never refused for its spelling
        assert "not canonical" not in exc.problem and "fragment" not in exc.problem, (path, exc.problem)
        return
    assert mapped.path == written.partition("?")[0], (path, mapped.path)
    if mapped.plane == "arm":  # (the sandbox serves its vaults under ARM's origin: /vaults/... is a vault request)
        again = map_arm(method, _arm_decode(mapped.path))
        assert (again.operation, again.scope) == (mapped.operation, mapped.scope)


# -- continuation: as an argument, and sealed around hostile next links ----------------------------------


@FAST
@given(continuation=st.one_of(
    st.text(min_size=1, max_size=80),
    st.text(alphabet=string.ascii_letters + string.digits + "-_.=", min_size=1, max_size=120),
    st.builds(lambda a, b: f"{a}.{b}", st.binary(max_size=60).map(lambda b: tokens._b64(b)),
              st.binary(min_size=32, max_size=32).map(lambda b: tokens._b64(b))),
    st.sampled_from(["https://127.0.0.1:8443/subscriptions", f"{S}/resources", ".", "..", "e30.", "e30.e30"]),
), subscription=st.one_of(st.none(), st.uuids().map(str)))
def test_resource_list_continuation_argument(azure, sends_nothing, continuation, subscription):
    with pytest.raises(tokens.ContinuationRefused) as refused:
        TOOLS["resource_list"].plan(azure, subscription=subscription, continuation=continuation)
    assert refused.value.code == "InvalidContinuation"


@FAST
@given(data=st.data())
def test_a_sealed_next_link_only_continues_its_own_listing(azure, sends_nothing, data):
    """Even a hostile nextLink from ARM, sealed by this server, cannot move the listing."""
    sub = azure.env.default_subscription
    group = data.draw(st.one_of(st.none(), st.just("rg-app")))
    listing = f"/subscriptions/{sub}" + (f"/resourceGroups/{group}" if group else "") + "/resources"
    origin = data.draw(st.sampled_from([azure.env.arm_endpoint, azure.env.arm_endpoint.upper(), "https://evil.example",
                                        azure.env.arm_endpoint + ":1", "https://x@" + azure.env.arm_endpoint[8:],
                                        azure.env.arm_endpoint.replace("https", "http")]))
    path = data.draw(st.one_of(
        st.just(listing),
        st.builds(lambda segs: listing + "/" + "/".join(segs), st.lists(segment, min_size=1, max_size=2)),
        st.builds(lambda h: listing.replace("resources", h), hostile_segment),
        st.builds(lambda h: listing + h, hostile_segment),
        st.sampled_from([listing.replace(sub, SUB), listing.upper(), "/subscriptions", f"{listing}/../../.."]),
    ))
    link = origin + path + data.draw(st.sampled_from(["", "?$skiptoken=abc", "?$skiptoken=..%2F..", "?a=/../b"]))
    token = tokens.seal(link, tool="resource_list", session_id=azure.session.id, scope=listing)
    try:
        planned = TOOLS["resource_list"].plan(azure, resource_group=group, continuation=token)
    except ToolInputError:
        return
    assert len(planned) == 1 and planned[0].method == "GET"
    url = planned[0].url
    try:
        mapped = map_request("GET", url, Endpoints.from_environment(azure.env))
    except UnmappableRequestError as exc:
        # The link is ARM's, not the client's. urlsplit drops tab, CR and LF before the tool compares
        # the link's path with its listing, so a link with one of them passes that check; the guard
        # then refuses to send it. Either way nothing but the listing is ever requested.
        assert set(url) & set("\t\r\n"), (url, exc.problem)
        return
    assert urlsplit(url).netloc.lower() == _arm_host(azure), url
    assert mapped.path.lower() == listing.lower()
    expected = ("Microsoft.Resources/subscriptions/resourceGroups/resources/read" if group
                else "Microsoft.Resources/subscriptions/resources/read")
    assert mapped.operation == expected
    assert mapped.scope.lower() == listing[: -len("/resources")].lower()


# -- d. continuation tokens ------------------------------------------------------------------------------

links = st.builds(lambda sub, skip: f"https://127.0.0.1:8443/subscriptions/{sub}/resources?$skiptoken={skip}",
                  st.uuids().map(str), st.text(alphabet=string.ascii_letters + string.digits, max_size=20))
sessions = st.text(alphabet=string.ascii_letters + string.digits + "._:-", min_size=1, max_size=40)
LISTING = f"{S}/resources"


def _refused(token: str, **binding: Any) -> tokens.ContinuationRefused:
    with pytest.raises(tokens.ContinuationRefused) as refused:
        tokens.unseal(token, **binding)
    assert refused.value.code == "InvalidContinuation"
    return refused.value


@FAST
@given(link=links, session=sessions, scope=st.sampled_from([LISTING, f"{G}/resources"]))
def test_a_genuine_token_round_trips(link, session, scope):
    token = tokens.seal(link, tool="resource_list", session_id=session, scope=scope)
    assert tokens.unseal(token, tool="resource_list", session_id=session, scope=scope) == (link, scope)
    assert tokens.unseal(token, tool="resource_list", session_id=session) == (link, scope)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)


@FAST
@given(forged=st.one_of(
    st.text(max_size=200),
    st.builds(lambda p, m: f"{tokens._b64(p)}.{tokens._b64(m)}", st.binary(max_size=200), st.binary(max_size=40)),
    st.builds(lambda d, m: tokens._b64(json.dumps(d).encode()) + "." + tokens._b64(m),
              st.fixed_dictionaries({"v": st.just(1), "tool": st.just("resource_list"), "session": st.just("s1"),
                                     "scope": st.just(LISTING), "link": links}),
              st.binary(min_size=32, max_size=32)),
))
def test_a_forged_token_is_refused(forged):
    _refused(forged, tool="resource_list", session_id="s1")


_REPLACEMENTS = string.ascii_letters + string.digits + "-_+/=. \n%é\x00"


@FAST
@given(link=links, session=sessions, data=st.data())
def test_a_token_edited_anywhere_is_refused(link, session, data):
    token = tokens.seal(link, tool="resource_list", session_id=session, scope=LISTING)
    at = data.draw(st.integers(0, len(token) - 1))
    if data.draw(st.booleans()):
        char = chr(ord(token[at]) ^ data.draw(st.integers(1, 255)))
    else:
        char = data.draw(st.sampled_from(_REPLACEMENTS).filter(lambda c: c != token[at]))
    _refused(token[:at] + char + token[at + 1:], tool="resource_list", session_id=session)


def test_every_single_character_edit_of_a_token_is_refused():
    """Exhaustive over one token: every position, every bit flip and every base64 look-alike."""
    token = tokens.seal(f"https://127.0.0.1:8443{LISTING}?$skiptoken=x", tool="resource_list", session_id="s1",
                        scope=LISTING)
    accepted = []
    for at, original in enumerate(token):
        candidates = {chr(ord(original) ^ (1 << bit)) for bit in range(8)} | set(_REPLACEMENTS)
        for char in candidates - {original}:
            edited = token[:at] + char + token[at + 1:]
            try:
                tokens.unseal(edited, tool="resource_list", session_id="s1")
            except tokens.ContinuationRefused:
                continue
            accepted.append((at, original, char))
    assert accepted == [], f"{len(accepted)} edited tokens opened, e.g. {accepted[:5]}"


@FAST
@given(link=links, session=sessions, other=sessions, tool=st.sampled_from(sorted(TOOLS)),
       scope=st.sampled_from([f"{G}/resources", f"/subscriptions/{uuid.UUID(int=1)}/resources", "/"]))
def test_a_token_is_refused_in_another_session_tool_or_listing(link, session, other, tool, scope):
    token = tokens.seal(link, tool="resource_list", session_id=session, scope=LISTING)
    if other != session:
        _refused(token, tool="resource_list", session_id=other)
    if tool != "resource_list":
        _refused(token, tool=tool, session_id=session)
    _refused(token, tool="resource_list", session_id=session, scope=scope)
    # and case folding is all the listing check forgives
    assert tokens.unseal(token, tool="resource_list", session_id=session, scope=LISTING.upper())[0] == link


# -- through the server: an edited continuation sends nothing and is audited once ---------------------------

@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _edit(token: str) -> str:
    body, tag = token.split(".")
    flipped = "A" if body[5] != "A" else "B"
    return body[:5] + flipped + body[6:] + "." + tag


@pytest.mark.anyio
async def test_edited_forged_and_replayed_continuations_through_the_server(sandbox, tmp_path):
    from mcp import Client
    from server_helpers import audit_records, error_of, make_runtime, server_for

    audit = tmp_path / "audit.jsonl"
    other_audit = tmp_path / "other.jsonl"
    runtime = make_runtime(sandbox, audit)
    other = make_runtime(sandbox, other_audit)  # another agent session in this same server process
    try:
        async with Client(server_for(runtime)) as client, Client(server_for(other)) as other_client:
            first = await client.call_tool("resource_list", {"top": 1})
            assert not first.is_error, first.content
            token = first.structured_content["continuation"]
            assert token
            sub = sandbox.manifest["subscriptions"][0]["id"]
            attempts = [
                (client, audit, {"top": 1, "continuation": _edit(token)}),
                (client, audit, {"top": 1, "continuation": token[:-1] + ("A" if token[-1] != "A" else "B")}),
                (client, audit, {"top": 1, "continuation": f"https://{sandbox.manifest['arm_endpoint'][8:]}/subscriptions/{sub}/resources"}),
                (client, audit, {"top": 1, "continuation": token, "resource_group": "rg-app"}),
                (other_client, other_audit, {"top": 1, "continuation": token}),
            ]
            for caller, log, arguments in attempts:
                since = sandbox.last_seq()
                before = audit_records(log)
                result = await caller.call_tool("resource_list", arguments)
                assert result.is_error, arguments
                assert error_of(result)["code"] == "InvalidContinuation", (arguments, error_of(result))
                assert sandbox.requests(since=since) == [], arguments
                added = audit_records(log)[len(before):]
                assert [r["kind"] for r in added] == ["tool"], added
                assert added[0]["tool"] == "resource_list"
            # and the genuine token still works afterwards
            since = sandbox.last_seq()
            second = await client.call_tool("resource_list", {"top": 1, "continuation": token})
            assert not second.is_error, second.content
            assert sandbox.requests(kind="arm", since=since)
    finally:
        runtime.close()
        other.close()


# -- log_query: the workspace as an id, a name + group, or a GUID ----------------------------------------

WORKSPACE_ID = f"{G}/providers/Microsoft.OperationalInsights/workspaces/log-prod"


@st.composite
def workspace_ids(draw: st.DrawFn) -> str:
    """Workspace ids (some hostile or malformed, as resource_ids makes them), and ids of other types."""
    if draw(st.booleans()):
        name = draw(st.one_of(st.sampled_from(["log-prod", "LOG-1", "log", "a" * 63, "-log", "log_1"]), hostile_value))
        namespace = draw(st.sampled_from(["Microsoft.OperationalInsights", "microsoft.operationalinsights",
                                          "Microsoft.Insights"]))
        kind = draw(st.sampled_from(["workspaces", "Workspaces", "clusters"]))
        extra = draw(st.sampled_from(["", "", "/tables/AppRequests", "/providers/Microsoft.OperationalInsights/workspaces/w"]))
        return f"{G}/providers/{namespace}/{kind}/{name}{extra}"
    return draw(resource_ids())


def _logs_plan(azure: AzureSession, **arguments: Any) -> tuple[str, str, Any] | None:
    """(method, url, mapped or the UnmappableRequestError) of log_query's one planned request; None if refused."""
    try:
        planned = TOOLS["log_query"].plan(azure, query="AppRequests | take 1", **arguments)
    except ToolInputError:
        return None
    assert len(planned) == 1, planned
    request = planned[0]
    try:
        mapped: Any = map_request(request.method, request.url, Endpoints.from_environment(azure.env))
    except UnmappableRequestError as exc:
        mapped = exc
    return request.method, request.url, mapped


@FAST
@given(workspace=st.one_of(workspace_ids(), guids, hostile_value))
@example(workspace=WORKSPACE_ID)
@example(workspace=f"{G}/providers/Microsoft.Compute/virtualMachines/vm/providers/Microsoft.OperationalInsights/workspaces/w")
def test_log_query_workspace_id(azure, sends_nothing, workspace):
    planned = _logs_plan(azure, workspace=workspace)
    if planned is None:
        return
    method, url, mapped = planned
    assert method == "POST"
    logs = azure.env.logs_endpoint.rstrip("/") + "/v1"
    assert url.startswith(logs + "/"), url
    value = workspace.strip()
    if ref_guid(value):  # the GUID form: planned as Log Analytics spells it, and refused by the guard
        assert url == f"{logs}/workspaces/{value.lower()}/query"
        assert isinstance(mapped, UnmappableRequestError) and "resource id" in mapped.problem
        return
    ref = ref_resource_id(value)
    assert ref is not None and f"{ref[0]}/{ref[1]}".lower() == "microsoft.operationalinsights/workspaces", workspace
    assert value.count("/") == 8, workspace  # one provider section: not an extension dressed as a workspace
    assert not isinstance(mapped, UnmappableRequestError), (workspace, mapped)
    assert (mapped.operation, mapped.scope, mapped.plane) == (
        "Microsoft.OperationalInsights/workspaces/query/read", value, "loganalytics")
    assert not mapped.unknown_operation


@FAST
@given(
    workspace=st.one_of(st.sampled_from(["log-prod", "log", "Log-1", "a" * 63, "a" * 64, "-x-", "x"]), hostile_value),
    resource_group=st.one_of(st.none(), st.sampled_from(["rg-app", "a(b)", "providers", "x."]), hostile_value),
    subscription=st.one_of(st.none(), guids, hostile_value),
)
def test_log_query_workspace_name_and_group(azure, sends_nothing, workspace, resource_group, subscription):
    planned = _logs_plan(azure, workspace=workspace, resource_group=resource_group, subscription=subscription)
    if planned is None:
        return
    _, _, mapped = planned
    value = workspace.strip()
    if ref_guid(value) or value.startswith("/"):
        return  # covered by test_log_query_workspace_id
    sub = subscription or _subscriptions_of(azure)
    assert ref_guid(sub) and resource_group and ref_group(resource_group), (subscription, resource_group)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{2,61}[A-Za-z0-9]", value), workspace
    assert (mapped.operation, mapped.scope) == (
        "Microsoft.OperationalInsights/workspaces/query/read",
        f"/subscriptions/{sub}/resourceGroups/{resource_group}/providers/Microsoft.OperationalInsights/workspaces/{value}",
    )


@SOME
@given(timespan=st.one_of(st.sampled_from(["PT1H", "P1D", "P7D", "PT30M", "P1DT12H", "PT0.5S", "2026-12-01T00:00:00Z/PT6H",
                                           "PT6H/2026-12-01T06:00:00Z", "2026-12-01T00:00:00Z/2026-12-01T06:00:00Z",
                                           "P1M", "P1Y", "PT", "P", "1h", "PT0S", "P800D", "PT1H/PT2H",
                                           "2026-12-01T06:00:00Z/2026-12-01T00:00:00Z", "a/b/c"]), hostile_value))
def test_log_query_timespan_is_checked_before_anything_is_sent(azure, sends_nothing, timespan):
    from azure_agent_mcp.tools.logs_timespan import parse_timespan

    try:
        parsed = parse_timespan(timespan)
    except ToolInputError as exc:
        assert "timespan" in str(exc) and "PT1H" in exc.hint  # names the formats that work
        assert _logs_plan(azure, workspace=WORKSPACE_ID, timespan=timespan) is None
        return
    import datetime

    if isinstance(parsed, datetime.timedelta):
        assert datetime.timedelta(0) < parsed <= datetime.timedelta(days=730)
    else:
        start, other = parsed
        assert start.tzinfo is not None
        assert (other > start) if isinstance(other, datetime.datetime) else other > datetime.timedelta(0)
    assert _logs_plan(azure, workspace=WORKSPACE_ID, timespan=timespan) is not None
