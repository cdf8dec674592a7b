"""The published JSON Schema (issue 3, points 3 and 8): one file in two places, valid draft 2020-12,
helpful in editors, true of every example, documented by a generated page, and in agreement with
the loader: whatever the schema rejects the loader rejects."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from portpatrol import kinds
from portpatrol.errors import ConfigError, Problem
from portpatrol.schema import SCHEMA_FILE, generated_text, schema_text
from portpatrol.sources.file import loads

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "schemas" / "portpatrol.schema.json"
SCHEMA: dict[str, Any] = json.loads(PUBLISHED.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
# Keys that are required, or whose default is derived, so a fixed default would mislead.
NO_DEFAULT = {"targets", "address", "name", "value", "command"}
# Keys of kind blocks whose default is the address's part (user, password...) or the system's (CA).
NO_DEFAULT |= {"user", "password", "token", "vhost"}
NO_DEFAULT |= {"path", "equals", "matches", "follow_redirects"}  # a JSON condition's; by the codes
NO_DEFAULT |= {"database", "query", "sslrootcert"}  # unset: the user's own, no query, no CA


def test_the_package_ships_the_published_schema() -> None:
    shipped = SCHEMA_FILE  # in a wheel, the same file (pyproject.toml: force-include)
    assert shipped.read_bytes() == PUBLISHED.read_bytes()
    assert schema_text() == PUBLISHED.read_text(encoding="utf-8")


def test_the_published_schema_is_the_one_the_code_generates() -> None:
    """After changing a kind's SCHEMA or the common settings: python -m portpatrol.schema."""
    assert PUBLISHED.read_text(encoding="utf-8") == generated_text()


def test_the_schema_is_valid_draft_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def _subschemas(node: Any, where: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _subschemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _subschemas(value, f"{where}/{index}")


def _resolved(prop: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in prop:
        found: dict[str, Any] = SCHEMA["$defs"][prop["$ref"].rsplit("/", 1)[1]]
        return {**found, **{key: value for key, value in prop.items() if key != "$ref"}}
    return prop


def test_every_object_refuses_unknown_keys() -> None:
    objects = [(where, node) for where, node in _subschemas(SCHEMA) if node.get("type") == "object"]
    assert len(objects) >= 6
    for where, node in objects:
        if "propertyNames" in node:  # the header mapping: any header name, each value checked
            assert isinstance(node["additionalProperties"], dict), where
        else:
            assert node.get("additionalProperties") is False, where


def test_every_key_has_a_description_a_default_and_examples_for_editors() -> None:
    keys = [
        (f"{where}/{name}", name, prop)
        for where, node in _subschemas(SCHEMA)
        for name, prop in node.get("properties", {}).items()
    ]
    assert len(keys) >= 20
    for where, name, prop in keys:
        full = _resolved(prop)
        assert full.get("description"), where
        assert full.get("examples"), where
        assert ("default" in full) is (name not in NO_DEFAULT), where


def test_every_default_and_example_is_valid_for_its_key() -> None:
    for where, node in _subschemas(SCHEMA):
        for name, prop in node.get("properties", {}).items():
            validator = jsonschema.Draft202012Validator({**prop, "$defs": SCHEMA["$defs"]})
            values = [*prop.get("examples", ()), *([prop["default"]] if "default" in prop else [])]
            for value in values:
                assert validator.is_valid(value), (f"{where}/{name}", value)


def _config_examples() -> list[Path]:
    # Only files that declare our schema: examples/ also holds a compose file and manifests.
    marker = "# yaml-language-server: $schema=../schemas/portpatrol.schema.json"
    return sorted(path for path in (ROOT / "examples").glob("*.yaml") if path.read_text().startswith(marker))


EXAMPLE_ENV = {
    "API_TOKEN": "tok-9f8e7d6c",
    "RABBITMQ_PASSWORD": "rabbit-pw-123",
    "REDIS_PASSWORD": "redis-pw-4",
    "ORDERS_DB_PASSWORD": "orders-pw-1",
    "MONITOR_PASSWORD": "mon-pw-2",
    "SHOP_DB_PASSWORD": "shop-pw-3",
}


def test_there_are_config_examples() -> None:
    assert len(_config_examples()) >= 3


@pytest.fixture(scope="module")
def tls_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real CA and client files for the examples that name TLS files (loaded at start: a missing
    one is a configuration error), made with trustme in the folders their variables move."""
    import trustme

    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.crt"))
    client = ca.issue_cert("client.test")
    client.cert_chain_pems[0].write_to_path(str(folder / "client.crt"))
    client.private_key_pem.write_to_path(str(folder / "client.key"))
    ca_file = str(folder / "ca.crt")
    return {"VAULT_CA_FILE": ca_file, "KUBE_CA_FILE": ca_file, "PAYMENTS_TLS": str(folder)}


@pytest.mark.parametrize("path", _config_examples(), ids=lambda path: path.name)
def test_every_example_validates_and_loads(path: Path, tls_env: dict[str, str]) -> None:
    document = yaml.safe_load(path.read_text())
    VALIDATOR.validate(document)
    plan = loads(path.read_bytes(), str(path), EXAMPLE_ENV | tls_env)
    assert len(plan.targets) == len(document["targets"])


def test_the_configuration_reference_is_generated_from_the_schema() -> None:
    spec = importlib.util.spec_from_file_location("make_reference", ROOT / "docs" / "make_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == module.render(SCHEMA), (
        "docs/configuration.md drifted: run python docs/make_reference.py"
    )
    for where, node in _subschemas(SCHEMA):
        for name in node.get("properties", {}):
            if not where.endswith("anyOf/1/items"):
                assert f"{name}`" in committed, (where, name)


# --------------------------------------------------------------------------- loader and schema agree

ENV = {"TOKEN": "tok-5e3c8a", "PORT": "8080", "SLOW": "3s", "EMPTY": "", "CODES": "200-299"}

GOOD_DURATIONS = ["2s", "500ms", "1m30s", "1.5s", "100ms", "1h", "${SLOW}", "${NOPE:-2s}"]
BAD_DURATIONS = ["5", "0s", "-1s", "1 s", "", "abc", "${NOPE}", "${EMPTY}", "${1}", "٣s", "5s\n", "2S", "1d"]
GOOD_METHODS = ["GET", "HEAD", "POST", "${NOPE:-GET}"]
BAD_METHODS = ["G T", "", "GET\n", "${NOPE}", "ÄÖ"]
GOOD_CODES: list[Any] = ["200", "200,300-302", " 200 , 204 ", "${CODES}", 204, 599]
BAD_CODES: list[Any] = ["700", "2xx", "302-301", "", "0200", 99, 600, True, 200.5, "${NOPE}"]
TEXT = st.text(st.characters(codec="utf-8"), max_size=8)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 1001), st.floats(allow_nan=False), TEXT)
ANY = st.one_of(SCALARS, st.lists(SCALARS, max_size=2), st.dictionaries(TEXT, SCALARS, max_size=2))

ADDRESSES = {
    "tcp": ["db:5432", "tcp://db:5432", "[::1]:80", "127.0.0.1:1", "db:${PORT}", "${NOPE:-db}:5432"],
    "http": ["http://api:8080/healthz", "https://x/y?z=1", "http://u:${TOKEN}@h/", "HTTP://Api/"],
    "icmp": ["icmp://gw", "icmp://[::1]", "icmp://10.0.0.1"],
}
BAD_ADDRESSES: list[Any] = ["db", "htp://x", "", " ", "http://exam ple", "tcp://", "${NOPE}", "a:0", 12]


def _optional(**values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=values)


def _durations(good_only: bool) -> st.SearchStrategy[Any]:
    good = st.sampled_from(GOOD_DURATIONS)
    return good if good_only else st.one_of(good, st.sampled_from(BAD_DURATIONS), SCALARS)


def _timing(good_only: bool) -> dict[str, st.SearchStrategy[Any]]:
    threshold = st.integers(1, 1000)
    return {
        "interval": _durations(good_only),
        "dial_timeout": _durations(good_only),
        "success_threshold": threshold if good_only else st.one_of(threshold, SCALARS),
    }


def _headers(good_only: bool) -> st.SearchStrategy[Any]:
    names = st.sampled_from(["Authorization", "Accept", "X-Request-Id", "x-tag"])
    values = st.sampled_from(["Bearer ${TOKEN}", "application/json", "", "a=b, c", "$${literal}"])
    mapping = st.dictionaries(names, values, max_size=3)
    pairs = st.lists(st.fixed_dictionaries({"name": names, "value": values}), max_size=3)
    if good_only:
        return st.one_of(
            mapping, pairs.filter(lambda items: len({i["name"].lower() for i in items}) == len(items))
        )
    bad_names = st.sampled_from(["bad name", "", "X:Y", "Ä"])
    bad_values: st.SearchStrategy[Any] = st.one_of(st.sampled_from(["x\x01", "${NOPE}", "${EMPTY}"]), SCALARS)
    return st.one_of(
        mapping,
        pairs,
        st.dictionaries(st.one_of(names, bad_names), st.one_of(values, bad_values), max_size=3),
        st.lists(st.one_of(_optional(name=names, value=values, extra=SCALARS), SCALARS), max_size=3),
        SCALARS,
    )


def _http(good_only: bool) -> st.SearchStrategy[dict[str, Any]]:
    methods = st.sampled_from(GOOD_METHODS)
    codes = st.sampled_from(GOOD_CODES)
    flags = st.booleans()
    fields: dict[str, st.SearchStrategy[Any]] = {
        "method": methods if good_only else st.one_of(methods, st.sampled_from(BAD_METHODS), SCALARS),
        "headers": _headers(good_only),
        "expected_status_codes": codes if good_only else st.one_of(codes, st.sampled_from(BAD_CODES)),
        "skip_tls_verify": flags if good_only else st.one_of(flags, SCALARS),
    }
    if good_only:
        return _optional(**fields)
    return _optional(**fields, allow_duplicate_headers=st.one_of(flags, SCALARS), methd=ANY)


@st.composite
def good_targets(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(ADDRESSES)))
    found: dict[str, Any] = {"address": draw(st.sampled_from(ADDRESSES[kind]))}
    found |= draw(_optional(name=st.sampled_from(["db", "orders API", "${NOT_REPLACED}"]), **_timing(True)))
    if draw(st.booleans()):
        found["type"] = draw(st.sampled_from(["http", "https"])) if kind == "http" else kind
    if kind == "http" and draw(st.booleans()):
        found["http"] = draw(_http(True))
    if kind == "icmp" and draw(st.booleans()):
        found["icmp"] = draw(_optional(read_timeout=_durations(True)))
    return found


def any_targets() -> st.SearchStrategy[Any]:
    address = st.one_of(
        st.sampled_from([a for group in ADDRESSES.values() for a in group]), st.sampled_from(BAD_ADDRESSES)
    )
    fields = _optional(
        address=address,
        name=st.one_of(TEXT, SCALARS),
        type=st.one_of(st.sampled_from(["tcp", "http", "https", "icmp", "TCP", "ftp"]), SCALARS),
        http=st.one_of(_http(False), SCALARS),
        icmp=st.one_of(_optional(read_timeout=_durations(False), ttl=ANY), SCALARS),
        dial_timout=ANY,
        **_timing(False),
    )
    return st.one_of(good_targets(), fields, SCALARS)


def documents(good_only: bool) -> st.SearchStrategy[Any]:
    if good_only:
        return st.fixed_dictionaries(
            {"targets": st.lists(good_targets(), min_size=1, max_size=4)},
            optional={
                "timeout": st.one_of(st.none(), _durations(True)),
                "defaults": _optional(**_timing(True)),
            },
        )
    document = _optional(
        targets=st.one_of(st.lists(any_targets(), max_size=4), ANY),
        timeout=_durations(False),
        defaults=st.one_of(_optional(**_timing(False), intervall=ANY), SCALARS),
        workers=ANY,
    )
    return st.one_of(document, ANY)


BAD_VALUES: list[Any] = [*BAD_DURATIONS, *BAD_METHODS, *BAD_CODES, *BAD_ADDRESSES, None, [], {}, "TCP"]


def _places(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _places(value, (*path, key))


@st.composite
def near_valid_documents(draw: st.DrawFn) -> Any:
    """A valid document with one to three changes: a value replaced, a key dropped or added."""
    document = json.loads(json.dumps(draw(documents(good_only=True))))
    for _ in range(draw(st.integers(1, 3))):
        places = list(_places(document))
        path, node = draw(st.sampled_from(places))
        how = draw(st.sampled_from(["replace", "drop", "add"]))
        if how == "replace" and path:
            parent = document
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = draw(
                st.one_of(st.sampled_from(BAD_VALUES), st.sampled_from(GOOD_DURATIONS), ANY)
            )
        elif how == "drop" and isinstance(node, dict) and node:
            del node[draw(st.sampled_from(sorted(node)))]
        elif how == "add" and isinstance(node, dict):
            node[draw(st.sampled_from(["intervl", "http", "icmp", "type", "name", "timeout", "x"]))] = draw(
                ANY
            )
    return document


def _loader_accepts(document: Any) -> bool:
    problems: tuple[Problem, ...] = ()
    try:
        loads(yaml.safe_dump(document, allow_unicode=True), "pp.yaml", ENV)
    except ConfigError as error:
        problems = error.problems or (Problem("nowhere", "a ConfigError without problems"),)
    assert all(problem.where.startswith("pp.yaml") for problem in problems), problems
    return not problems


FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(documents(good_only=False))
def test_whatever_the_loader_accepts_the_schema_accepts(document: Any) -> None:
    if _loader_accepts(document):
        errors = [error.message for error in VALIDATOR.iter_errors(document)]
        assert not errors, (document, errors)


@FAST
@given(near_valid_documents())
def test_near_misses_the_loader_accepts_the_schema_accepts(document: Any) -> None:
    if _loader_accepts(document):
        errors = [error.message for error in VALIDATOR.iter_errors(document)]
        assert not errors, (document, errors)


@FAST
@given(documents(good_only=True))
def test_documents_of_valid_values_are_accepted_by_both(document: Any) -> None:
    assert VALIDATOR.is_valid(document), list(VALIDATOR.iter_errors(document))
    assert _loader_accepts(document), document


@pytest.mark.parametrize(
    "document",
    [
        {"targets": []},
        {"targets": [{"address": "db:1", "intervl": "1s"}]},
        {"targets": [{"address": "db:1", "interval": "5"}]},
        {"targets": [{"address": "db:1", "interval": "0s"}]},
        {"targets": [{"address": "db:1", "success_threshold": 0}]},
        {"targets": [{"address": "db:1", "type": "TCP"}]},
        {"targets": [{"address": "http://a/", "http": {"expected_status_codes": "700"}}]},
        {"targets": [{"address": "http://a/", "http": {"headers": {"bad name": "x"}}}]},
        {"targets": [{"address": "http://a/", "http": {"headers": [{"name": "A"}]}}]},
        {"targets": [{"address": "http://a/", "http": {"method": "G T"}}]},
        {"targets": [{"address": "db:1"}], "workers": 3},
        {"timeout": "5m"},
    ],
)
def test_both_reject_what_the_schema_describes_as_wrong(document: Any) -> None:
    assert not VALIDATOR.is_valid(document)
    assert not _loader_accepts(document)


# --------------------------------------------------------------------------- every kind's block

# One address of each kind that has a block (nothing is looked up or connected when a file loads).
KIND_ADDRESSES = {
    "http": "http://api:8080/healthz",
    "icmp": "icmp://gw",
    "dns": "dns:db.example.test",
    "file": "file:///tmp/ready",
    "redis": "redis://cache:6379",
    "nats": "nats://queue:4222",
    "memcached": "memcached://cache:11211",
    "amqp": "amqp://mq:5672",
    "grpc": "grpc://api:50051",
    "postgres": "postgres://db:5432",
    "mysql": "mysql://db:3306",
}
BLOCKS = {name: SCHEMA["$defs"]["target"]["properties"][name] for name in KIND_ADDRESSES}


def test_every_kind_with_a_block_has_an_address_here() -> None:
    """So the property test below feeds every kind's block, a new kind's too."""
    with_blocks = {kind.NAME for kind in kinds.every() if kind.SCHEMA is not None and kind.SCHEMES}
    assert with_blocks == set(KIND_ADDRESSES)


def _examples_of(schema: dict[str, Any]) -> list[Any]:
    if "$ref" in schema:
        schema = SCHEMA["$defs"][schema["$ref"].removeprefix("#/$defs/")] | schema
    return [*schema.get("examples", []), *(schema.get("enum") or [])]


@st.composite
def kind_targets(draw: st.DrawFn) -> dict[str, Any]:
    """A target of any kind whose block holds the schema's examples, and wrong values of any type."""
    name = draw(st.sampled_from(sorted(KIND_ADDRESSES)))
    properties = BLOCKS[name].get("properties", {})
    block: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(sorted(properties) or ["x"]), max_size=4, unique=True)):
        examples = _examples_of(properties.get(key, {}))
        block[key] = draw(st.one_of(st.sampled_from(examples), ANY) if examples else ANY)
    return {"address": KIND_ADDRESSES[name], name: draw(st.one_of(st.just(block), ANY))}


@FAST
@given(kind_targets())
def test_any_kind_block_is_refused_in_words_or_accepted_as_the_schema_does(target: dict[str, Any]) -> None:
    """A value of a wrong type in any kind's block is a message (it was a TypeError traceback
    for `dns: {expect: 5}`), and a block the loader accepts is one the schema accepts."""
    document = {"targets": [target]}
    if _loader_accepts(document):
        errors = [error.message for error in VALIDATOR.iter_errors(document)]
        assert not errors, (document, errors)
