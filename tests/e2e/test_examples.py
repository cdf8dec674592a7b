"""The examples users copy: every Kubernetes manifest and the compose file is valid for the tool that
consumes it, hangs together (names that refer to each other exist), and gives portpatrol what it accepts.

The validators run offline: kubernetes-validate ships the Kubernetes schemas, check-jsonschema bundles the
compose specification's. As root (CI) they run in a network namespace of their own, which proves it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from portpatrol.kinds import parse_address
from portpatrol.kinds.http import HttpSpec
from portpatrol.kinds.icmp import IcmpSpec
from portpatrol.kinds.tcp import TcpSpec
from portpatrol.model import Kind
from portpatrol.sources import env
from portpatrol.values import parse_duration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
KUBERNETES = EXAMPLES / "deploy" / "kubernetes"
COMPOSE = EXAMPLES / "deploy" / "docker-compose.yaml"
SCHEMA = ROOT / "schemas" / "portpatrol.schema.json"
# The one image name every example and docs page uses (a placeholder until an image is published).
IMAGE = "ghcr.io/portpatrol/portpatrol:0.1.0"
BIN = Path(sys.executable).parent

Doc = dict[str, Any]


@dataclass(frozen=True)
class Expected:
    """What the portpatrol init container of a manifest must compile to."""

    kind: Kind
    name: str
    interval: float = 2.0
    dial_timeout: float = 1.0


# Every manifest in examples/deploy/kubernetes/ and what it waits for; a new file needs an entry here.
ENV_MANIFESTS = {
    "wait-for-vm.yaml": Expected(Kind.ICMP, "hostname.domain.tld"),
    "wait-for-valkey-minimal.yaml": Expected(Kind.TCP, "valkey.default.svc.cluster.local"),
    "wait-for-valkey.yaml": Expected(Kind.TCP, "Valkey", interval=5.0, dial_timeout=5.0),
    "wait-for-postgres.yaml": Expected(Kind.HTTP, "postgres.default.svc.cluster.local"),
    "wait-for-webapp.yaml": Expected(Kind.HTTP, "webapp", interval=5.0, dial_timeout=2.0),
    "wait-for-redis-auth.yaml": Expected(Kind.REDIS, "redis", interval=1.0),
    "wait-for-postgres-login.yaml": Expected(
        Kind("POSTGRES"), "postgres.default.svc.cluster.local", dial_timeout=3.0
    ),
}
CONFIGMAP_MANIFEST = "configmap.yaml"
MANIFESTS = [*ENV_MANIFESTS, CONFIGMAP_MANIFEST]


def offline(command: list[str]) -> list[str]:
    """As root, run the command without any network: a validator that tried to fetch a schema fails."""
    return ["unshare", "-n", *command] if os.geteuid() == 0 else command


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    tool = BIN / name
    assert tool.exists(), f"{name} is not installed beside {sys.executable} (pip install -e '.[test]')"
    return subprocess.run(
        offline([str(tool), *args]), capture_output=True, text=True, timeout=120, check=False
    )


def portpatrol_validate(args: list[str], environ: Mapping[str, str]) -> str:
    """`portpatrol validate` as a user would run it, with exactly this environment (it touches no
    network); returns the plan it prints, after checking that it accepted the configuration."""
    command = BIN / "portpatrol"
    assert command.exists(), f"portpatrol is not installed beside {sys.executable} (pip install -e .)"
    result = subprocess.run(
        [str(command), "validate", *args], env=dict(environ), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def plan_has(plan: str, name: str, kind: Kind) -> bool:
    return re.search(rf"^{re.escape(name)}\s+{kind.value}\s", plan, flags=re.MULTILINE) is not None


def documents(path: Path) -> list[Doc]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def secret_value(docs: list[Doc], name: str, key: str) -> str:
    """A key of a Secret defined in the same file (the examples use stringData, readable as is)."""
    secrets = {doc["metadata"]["name"]: doc for doc in of_kind(docs, "Secret")}
    assert name in secrets, f"secretKeyRef to {name!r}, which the file does not define"
    data = secrets[name].get("stringData", {})
    assert key in data, f"secretKeyRef to key {key!r}, which Secret {name!r} does not have"
    return str(data[key])


def pod_spec(deployment: Doc) -> Doc:
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


def portpatrol_container(docs: list[Doc]) -> Doc:
    (deployment,) = of_kind(docs, "Deployment")
    found: list[Doc] = [
        c for c in pod_spec(deployment).get("initContainers", []) if "portpatrol" in c["image"]
    ]
    (init,) = found
    return init


def container_environ(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The container's environment as the kubelet would set it, Secret references resolved."""
    environ: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            environ[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            environ[item["name"]] = secret_value(docs, ref["name"], ref["key"])
    return environ


def test_every_example_manifest_is_tested() -> None:
    assert sorted(p.name for p in KUBERNETES.glob("*.y*ml")) == sorted(MANIFESTS)


def test_examples_holds_portpatrol_configs_only() -> None:
    """What deploys portpatrol (compose, Kubernetes) lives in examples/deploy/ (issue 11.11)."""
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == ["deploy"]
    configs = [p for p in EXAMPLES.iterdir() if p.is_file()]
    assert configs
    for config in configs:
        jsonschema.validate(yaml.safe_load(config.read_text(encoding="utf-8")), schema)
    assert KUBERNETES.parent == COMPOSE.parent == EXAMPLES / "deploy"


# --- Kubernetes: the schema ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_passes_kubernetes_validate_strict(name: str) -> None:
    path = KUBERNETES / name
    result = run_tool("kubernetes-validate", "--strict", str(path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # A kind without a schema only warns and exits 0: require a pass line for every document.
    for doc in documents(path):
        resource = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
        assert f"passed for resource {resource}" in output, output


def test_kubernetes_validate_strict_rejects_a_misspelled_field(tmp_path: Path) -> None:
    """The check above means something: --strict catches a typo the API server would ignore."""
    text = (KUBERNETES / "wait-for-valkey.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "typo.yaml"
    bad.write_text(text.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"), encoding="utf-8")
    result = run_tool("kubernetes-validate", "--strict", str(bad))
    assert result.returncode != 0
    assert "readOnlyRootFileSystem" in result.stdout + result.stderr


# --- Kubernetes: what the schema cannot see -------------------------------------------------------------


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_hangs_together(name: str) -> None:
    docs = documents(KUBERNETES / name)
    (deployment,) = of_kind(docs, "Deployment")
    template = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items(), "selector must match the pod"

    pod = pod_spec(deployment)
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    names = [c["name"] for c in containers]
    assert len(names) == len(set(names)), f"container names must be unique in a pod: {names}"

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    config_maps = {doc["metadata"]["name"]: doc for doc in of_kind(docs, "ConfigMap")}
    for container in containers:
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"volumeMount of undeclared volume {mount['name']!r}"
        container_environ(docs, container)  # every secretKeyRef names a Secret and key in the file
    for volume in volumes.values():
        if "configMap" in volume:
            data = config_maps[volume["configMap"]["name"]]["data"]
            for item in volume["configMap"].get("items", []):
                assert item["key"] in data


@pytest.mark.parametrize("name", MANIFESTS)
def test_portpatrol_container_is_hardened(name: str) -> None:
    """Non-root 65532, read-only root, no privilege escalation, every capability dropped; only the ICMP
    example adds one (NET_RAW, the original's advice) and its pod allows unprivileged ping sockets."""
    docs = documents(KUBERNETES / name)
    container = portpatrol_container(docs)
    assert container["image"] == IMAGE
    assert "command" not in container, "keep the image's entrypoint (tini, then portpatrol)"
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["runAsGroup"] == 65532
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    sysctls = pod_spec(of_kind(docs, "Deployment")[0]).get("securityContext", {}).get("sysctls", [])
    environ = container_environ(docs, container)
    if environ.get("TARGET_ADDRESS", "").startswith("icmp://"):
        assert context["capabilities"]["add"] == ["NET_RAW"]
        assert {"name": "net.ipv4.ping_group_range", "value": "0 2147483647"} in sysctls
    else:
        assert "add" not in context["capabilities"]
        assert sysctls == []


# --- Kubernetes: portpatrol accepts what the manifests give it ------------------------------------------


@pytest.mark.parametrize(("name", "expected"), ENV_MANIFESTS.items())
def test_container_env_compiles_to_the_expected_target(name: str, expected: Expected) -> None:
    docs = documents(KUBERNETES / name)
    environ = container_environ(docs, portpatrol_container(docs))
    (target,) = env.targets(environ)
    env.log_settings(environ)  # LOG_EXTRA_FIELDS and friends parse too
    assert (target.kind, target.name) == (expected.kind, expected.name)
    assert (target.timing.interval, target.timing.dial_timeout) == (expected.interval, expected.dial_timeout)


@pytest.mark.parametrize(("name", "expected"), ENV_MANIFESTS.items())
def test_portpatrol_validate_accepts_the_container(name: str, expected: Expected) -> None:
    docs = documents(KUBERNETES / name)
    container = portpatrol_container(docs)
    environ = container_environ(docs, container)
    plan = portpatrol_validate(container.get("args", []), environ)
    assert plan_has(plan, expected.name, expected.kind), plan
    assert "change-me" not in plan, "the plan hides secret values"


def test_webapp_example_posts_the_secret_header_and_accepts_202() -> None:
    docs = documents(KUBERNETES / "wait-for-webapp.yaml")
    environ = container_environ(docs, portpatrol_container(docs))
    (target,) = env.targets(environ)
    spec = target.spec
    assert isinstance(spec, HttpSpec)
    assert spec.url == "http://webapp.default.svc.cluster.local:8080"
    assert spec.method == "POST"
    assert ("Authorization", "Bearer change-me") in spec.headers
    assert "Bearer change-me" in target.secrets, "the header value must be kept out of every log line"
    assert str(spec.expected) == "200,202"
    assert 202 in spec.expected
    assert 201 not in spec.expected


def test_redis_example_logs_in_with_the_secret_and_never_shows_it() -> None:
    docs = documents(KUBERNETES / "wait-for-redis-auth.yaml")
    environ = container_environ(docs, portpatrol_container(docs))
    (target,) = env.targets(environ)
    assert (target.spec.host, target.spec.port, target.spec.db) == (
        "redis.default.svc.cluster.local",
        6379,
        0,
    )
    assert target.spec.password == secret_value(docs, "redis-auth", "password")
    assert target.spec.password in target.secrets
    plan = portpatrol_validate(portpatrol_container(docs)["args"], environ)
    assert "db=0 login=yes tls=off" in plan


def test_valkey_examples_wait_on_the_same_port() -> None:
    specs = []
    for name in ("wait-for-valkey-minimal.yaml", "wait-for-valkey.yaml"):
        docs = documents(KUBERNETES / name)
        (target,) = env.targets(container_environ(docs, portpatrol_container(docs)))
        specs.append(target.spec)
    assert specs == [TcpSpec("valkey.default.svc.cluster.local", 6379)] * 2
    docs = documents(KUBERNETES / "wait-for-valkey.yaml")
    assert env.log_settings(container_environ(docs, portpatrol_container(docs))).extra_fields


def test_vm_example_pings_the_host() -> None:
    docs = documents(KUBERNETES / "wait-for-vm.yaml")
    (target,) = env.targets(container_environ(docs, portpatrol_container(docs)))
    assert target.spec == IcmpSpec("hostname.domain.tld", 1.0)


# --- Kubernetes: the ConfigMap with a multi-target file --------------------------------------------------


def configmap_example() -> tuple[list[Doc], Doc, Doc]:
    """The documents, the portpatrol container, and the config file it reads, as portpatrol sees it."""
    docs = documents(KUBERNETES / CONFIGMAP_MANIFEST)
    container = portpatrol_container(docs)
    args = container["args"]
    assert args[0] == "--config"
    config_path = Path(args[1])
    (mount,) = [m for m in container["volumeMounts"] if config_path.parent == Path(m["mountPath"])]
    assert mount["readOnly"] is True
    (deployment,) = of_kind(docs, "Deployment")
    (volume,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"]]
    (item,) = [i for i in volume["configMap"]["items"] if i["path"] == config_path.name]
    (config_map,) = [
        c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]
    ]
    config = yaml.safe_load(config_map["data"][item["key"]])
    assert isinstance(config, dict)
    return docs, container, config


def walk_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from walk_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_strings(item)


def test_configmap_config_interpolates_only_what_the_container_sets() -> None:
    docs, container, config = configmap_example()
    environ = container_environ(docs, container)
    used = {
        m.group(1) for text in walk_strings(config) for m in re.finditer(r"\$\{(\w+)(?::-[^}]*)?\}", text)
    }
    assert used == {"API_TOKEN"}
    assert used <= environ.keys()
    assert "change-me" not in yaml.safe_dump(config), "the token belongs in the Secret, not the ConfigMap"


def test_configmap_config_is_valid_per_the_published_schema() -> None:
    import json

    from jsonschema import Draft202012Validator

    _, _, config = configmap_example()
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = [f"{e.json_path}: {e.message}" for e in Draft202012Validator(schema).iter_errors(config)]
    assert errors == []


def test_portpatrol_validate_accepts_the_configmap_file_with_the_secret(tmp_path: Path) -> None:
    """The init container's view: the file at the path of its args, the Secret's token in its env."""
    docs, container, config = configmap_example()
    config_file = tmp_path / Path(container["args"][1]).name
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    environ = container_environ(docs, container)
    plan = portpatrol_validate(["--config", str(config_file)], environ)
    assert plan_has(plan, "postgres", Kind.TCP), plan
    assert plan_has(plan, "valkey", Kind.TCP), plan
    assert plan_has(plan, "api", Kind.HTTP), plan
    assert "deadline 5m" in plan, plan
    assert environ["API_TOKEN"] not in plan

    # Without the Secret's variable the file is refused, naming it, instead of sending "Bearer ".
    result = subprocess.run(
        [str(BIN / "portpatrol"), "validate", "--config", str(config_file)],
        env={},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "API_TOKEN" in result.stderr


def test_configmap_config_targets_are_valid_addresses() -> None:
    _, _, config = configmap_example()
    parse_duration(config["timeout"])
    for key in ("interval", "dial_timeout"):
        parse_duration(config["defaults"][key])
    kinds = []
    for item in config["targets"]:
        address = parse_address(item["address"], item.get("type"), "type")
        kinds.append(address.kind)
        for key in ("interval", "dial_timeout"):
            if key in item:
                parse_duration(item[key])
    assert kinds == [Kind.TCP, Kind.TCP, Kind.HTTP]
    assert [item["name"] for item in config["targets"]] == ["postgres", "valkey", "api"]


# --- docker-compose ---------------------------------------------------------------------------------------


def compose() -> Doc:
    (doc,) = documents(COMPOSE)
    return doc


def test_compose_file_passes_the_compose_specification_schema() -> None:
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_a_misspelled_condition(tmp_path: Path) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    bad = tmp_path / "compose.yaml"
    bad.write_text(text.replace("service_completed_successfully", "service_completed"), encoding="utf-8")
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(bad))
    assert result.returncode != 0
    assert "service_completed" in result.stdout + result.stderr


def test_compose_depends_on_names_existing_services() -> None:
    services = compose()["services"]
    for service in services.values():
        depends = service.get("depends_on", [])
        assert set(depends) <= services.keys()


def portpatrol_arguments(arguments: list[str], services: Mapping[str, Doc]) -> list[Kind]:
    """Targets and options as portpatrol will see them: each target names a service of the file."""
    kinds = []
    rest = iter(arguments)
    for argument in rest:
        if argument == "--timeout":
            parse_duration(next(rest))
            continue
        assert not argument.startswith("-"), f"unexpected option {argument}"
        address = parse_address(argument, None, "the check type")
        assert address.host in services, f"{argument} names no service of the file"
        kinds.append(address.kind)
    return kinds


def test_compose_wrapper_waits_then_runs_the_command() -> None:
    services = compose()["services"]
    web = services["web"]
    entrypoint = web["entrypoint"]
    assert entrypoint[0] == "portpatrol"
    assert entrypoint[-1] == "--", "everything after -- is the command portpatrol becomes"
    assert portpatrol_arguments(entrypoint[1:-1], services) == [Kind.POSTGRES, Kind.REDIS, Kind.HTTP]
    plan = portpatrol_validate(entrypoint[1:-1], {})
    assert "deadline 2m" in plan, plan
    assert plan_has(plan, "db", Kind.POSTGRES), plan
    assert plan_has(plan, "cache", Kind.REDIS), plan
    assert plan_has(plan, "api", Kind.HTTP), plan
    assert web["command"], "the wrapped command"
    # The entrypoint replaces the image's own, so an init must reap and forward signals after the exec.
    assert web["init"] is True


def test_compose_one_shot_service_gates_the_worker() -> None:
    services = compose()["services"]
    gate = services["wait-for-deps"]
    assert gate["image"] == IMAGE
    assert "entrypoint" not in gate, "the image's entrypoint is tini, then portpatrol"
    assert portpatrol_arguments(gate["command"], services) == [Kind.TCP, Kind.HTTP]
    plan = portpatrol_validate(gate["command"], {})
    assert "deadline 2m" in plan, plan
    assert plan_has(plan, "db", Kind.TCP), plan
    assert plan_has(plan, "api", Kind.HTTP), plan
    assert gate["restart"] == "no"
    assert (gate["read_only"], gate["cap_drop"], gate["user"]) == (True, ["ALL"], "65532:65532")
    assert services["worker"]["depends_on"] == {
        "wait-for-deps": {"condition": "service_completed_successfully"}
    }


# --- one image name, and docs that point at the tested examples ------------------------------------------

DOCS = {
    "initcontainer.md": [f"examples/deploy/kubernetes/{name}" for name in ENV_MANIFESTS],
    "configmap.md": [f"examples/deploy/kubernetes/{CONFIGMAP_MANIFEST}"],
    "compose.md": ["examples/deploy/docker-compose.yaml"],
    "queues-and-caches.md": [
        "examples/deploy/kubernetes/wait-for-redis-auth.yaml",
        "examples/queues-and-caches.yaml",
    ],
}
OWN_FILES = [
    *(KUBERNETES / name for name in MANIFESTS),
    COMPOSE,
    *(ROOT / "docs" / page for page in DOCS),
]


def test_one_image_name_everywhere() -> None:
    for path in OWN_FILES:
        for image in re.findall(r"\S*portpatrol/portpatrol\S*", path.read_text(encoding="utf-8")):
            assert image.strip("`'\",*:;.()") == IMAGE, f"{path.name}: {image}"


@pytest.mark.parametrize("page", DOCS)
def test_docs_page_points_at_its_tested_examples(page: str) -> None:
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    for example in DOCS[page]:
        assert example in text, f"docs/{page} should point at {example}"
        assert (ROOT / example).exists()
    assert "tests/e2e/test_examples.py" in text
    for block in re.findall(r"```ya?ml\n(.*?)```", text, flags=re.DOTALL):
        list(yaml.safe_load_all(block))  # every YAML snippet in the page parses


# --- every config example, without its environment (issue 11.10) ---------------------------------------


@pytest.mark.parametrize("config", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_config_example_validates_without_its_environment(config: str) -> None:
    """`validate --no-env` checks a file's shape and every value with no variable set: an unset
    `${VAR}` is allowed and the address is shown as written."""
    plan = portpatrol_validate(["--no-env", "--config", str(EXAMPLES / config)], {})
    assert re.search(r"^\d+ targets?, ", plan, flags=re.MULTILINE), plan


def test_no_env_shows_unset_references_as_written() -> None:
    plan = portpatrol_validate(["--no-env", "--config", str(EXAMPLES / "with-secrets.yaml")], {})
    assert "https://payments.${NAMESPACE:-default}.svc.cluster.local:8443/ready" in plan, plan
    assert "http://***@rabbitmq.default.svc.cluster.local:15672/" in plan, plan  # ${RABBITMQ_PASSWORD}
    assert re.search(r"^rabbitmq management\s+HTTP\s+\S+\s+2s\s+1s\s", plan, flags=re.MULTILINE), plan


def test_a_missing_secret_is_still_an_error_by_default() -> None:
    config = str(EXAMPLES / "with-secrets.yaml")
    result = subprocess.run(
        [str(BIN / "portpatrol"), "validate", "--config", config], env={}, capture_output=True, text=True
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "${API_TOKEN} is not set" in result.stderr


def test_no_env_still_finds_a_wrong_value(tmp_path: Path) -> None:
    config = tmp_path / "pp.yaml"
    config.write_text('targets: [{address: "${HOST}:99999"}, {address: "db:5432", interval: 5}]\n')
    result = subprocess.run(
        [str(BIN / "portpatrol"), "validate", "--no-env", "--config", str(config)],
        env={},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "port must be a number" in result.stderr, result.stderr
    assert "not a duration" in result.stderr, result.stderr
