"""The files of ``deploy/``, checked without Docker or a cluster.

The compose file parses, wires its services together and gives the server only settings it reads and
commands its CLI has; every Kubernetes manifest passes the Kubernetes JSON schemas (kubernetes-validate,
offline and strict) and the manifests agree with each other; the Dockerfile runs a real command line.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# No stubs: kubernetes-validate ships no py.typed marker.
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

# types-PyYAML is not a dev dependency: what yaml reads is Any here, checked where it matters.
import yaml  # type: ignore[import-untyped]

from opds_server.cli import _parser
from opds_server.config import _ENV_NAMES

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"
MANIFESTS = sorted(KUBERNETES.glob("*.yaml"))
IMAGE_ENTRYPOINT = ["opds-server"]

# Read by the server or its image besides the settings of opds_server/config.py.
STANDARD_ENV = frozenset({"OPDS_NO_BOOTSTRAP", "OPDS_ENV_FILE", "TZ"})
KNOWN_ENV = frozenset(_ENV_NAMES) | STANDARD_ENV
COMPOSE_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

Yaml = dict[str, Any]


def _mapping(value: object, where: str) -> Yaml:
    assert isinstance(value, dict), f"{where}: a mapping is expected, not {value!r}"
    return value


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option of ``parser`` and of its sub-commands, spelled out."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                found |= _option_strings(command)
    return found


def _cli(arguments: Sequence[str]) -> argparse.Namespace:
    """``arguments`` parsed by the real ``opds-server`` parser; a test failure if it rejects them or
    they abbreviate an option (argparse accepts ``--work`` for ``--workers``, a reader would not)."""
    parser = _parser()
    options = _option_strings(parser)
    abbreviated = [a for a in arguments if a.startswith("--") and a.partition("=")[0] not in options]
    assert not abbreviated, f"options not spelled as opds-server defines them: {abbreviated}"
    try:
        return parser.parse_args(list(arguments))
    except SystemExit as exc:
        code = exc.code
    pytest.fail(f"not an opds-server command line: {list(arguments)} (exit {code})")


# --- compose ----------------------------------------------------------------------------------------


def _compose() -> Yaml:
    return _mapping(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")), str(COMPOSE))


def _services() -> Yaml:
    return _mapping(_compose().get("services"), "services")


def _opds_services(services: Yaml) -> dict[str, Yaml]:
    """The services running the opds-server image (built from deploy/Dockerfile)."""
    app_image = _mapping(services["app"], "app").get("image")
    found = {}
    for name, service in services.items():
        body = _mapping(service, name)
        if "build" in body or (app_image is not None and body.get("image") == app_image):
            found[name] = body
    return found


def _environment(service: Yaml) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(str(item).partition("=")[::2] for item in environment)
    return {str(k): str(v) for k, v in _mapping(environment, "environment").items()}


def _command(service: Yaml) -> list[str]:
    command = service.get("command")
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list), f"an explicit command is expected, not {command!r}"
    return [str(part) for part in command]


def _volume(spec: object) -> tuple[str, str, bool]:
    """(source, target, read-only) of a short (``src:dst[:mode]``) or long volume entry."""
    if isinstance(spec, dict):
        return str(spec.get("source", "")), str(spec["target"]), bool(spec.get("read_only", False))
    parts = str(spec).rsplit(":", 2)  # the source may hold colons itself: ${VAR:?message}
    if parts[-1].startswith("/"):
        return ":".join(parts[:-1]), parts[-1], False
    return parts[0], parts[1], "ro" in parts[2].split(",")


def _depends_on(service: Yaml) -> dict[str, str]:
    depends = service.get("depends_on", {})
    if isinstance(depends, list):
        return {str(name): "service_started" for name in depends}
    return {
        str(name): str(_mapping(spec, str(name)).get("condition", "service_started")) for name, spec in depends.items()
    }


def test_compose_parses_with_the_services_of_a_deployment() -> None:
    compose = _compose()
    assert "version" not in compose, "the Compose Specification has no top-level version"
    assert {"app", "migrate", "postgres", "redis", "minio"} <= set(compose["services"])
    app = _mapping(compose["services"]["app"], "app")
    assert app["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == DOCKERFILE


def test_compose_mounts_the_library_read_only() -> None:
    app = _mapping(_services()["app"], "app")
    environment = _environment(app)
    mounts = {target: (source, read_only) for source, target, read_only in map(_volume, app["volumes"])}
    library = environment["OPDS_LIBRARY"]
    assert library in mounts, f"nothing is mounted at OPDS_LIBRARY={library}"
    source, read_only = mounts[library]
    assert read_only, f"the library at {library} must be mounted read-only"
    assert source.startswith("${CALIBRE_LIBRARY:?"), "the library's path must be required from the user"
    assert environment["OPDS_DATA_DIR"] in mounts, "the data dir needs a volume of its own"


def test_compose_dependencies_exist_and_wait_for_health() -> None:
    compose = _compose()
    services = _mapping(compose["services"], "services")
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        body = _mapping(service, name)
        for dependency, condition in _depends_on(body).items():
            assert dependency in services, f"{name} depends on {dependency}, which is not a service"
            assert dependency != name
            assert condition in COMPOSE_CONDITIONS, f"{name}: unknown condition {condition}"
            if condition == "service_healthy":
                check = _mapping(services[dependency], dependency).get("healthcheck", {})
                assert check.get("test"), f"{dependency} has no healthcheck to wait for"
                assert not check.get("disable"), f"{dependency} has its healthcheck disabled"
        for source, _target, _read_only in map(_volume, body.get("volumes", [])):
            if not source.startswith(("/", ".", "$", "~")):
                assert source in declared_volumes, f"{name} uses the undeclared volume {source}"
    app = _depends_on(_mapping(services["app"], "app"))
    assert app["migrate"] == "service_completed_successfully"
    assert app["postgres"] == app["redis"] == "service_healthy"


def test_compose_gives_the_server_only_settings_it_reads() -> None:
    services = _services()
    opds = _opds_services(services)
    assert {"app", "migrate"} <= set(opds)
    for name, service in opds.items():
        unknown = set(_environment(service)) - KNOWN_ENV
        assert not unknown, f"{name} sets variables the server does not read: {sorted(unknown)}"
    environment = _environment(opds["app"])
    assert environment["OPDS_SECRET_KEY"].startswith("${OPDS_SECRET_KEY:?"), "the secret must be required"
    assert environment["DATABASE_URL"].startswith("postgresql+psycopg://opds:${POSTGRES_PASSWORD")
    assert environment["DATABASE_URL"].endswith("@postgres:5432/opds")
    assert environment["REDIS_URL"] == "redis://redis:6379/0"
    assert environment["S3_ENDPOINT_URL"].endswith("http://minio:9000}")


def test_compose_runs_real_commands() -> None:
    services = _services()
    app = _mapping(services["app"], "app")
    serve = _cli(_command(app))
    assert serve.command == "serve"
    assert serve.host == "0.0.0.0"
    assert serve.workers >= 2
    assert any(str(port).endswith(f":{serve.port}") for port in app["ports"]), "the serving port is not published"
    assert f":{serve.port}/health" in " ".join(app["healthcheck"]["test"])
    migrate = _cli(_command(_mapping(services["migrate"], "migrate")))
    assert (migrate.command, migrate.command_name) == ("db", "upgrade")


# --- Kubernetes -------------------------------------------------------------------------------------


def _documents(path: Path) -> Iterator[Yaml]:
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if document is not None:
            yield _mapping(document, str(path))


def _resources() -> list[Yaml]:
    return [resource for path in MANIFESTS for resource in _documents(path)]


def _one(kind: str) -> Yaml:
    found = [resource for resource in _resources() if resource["kind"] == kind]
    assert len(found) == 1, f"one {kind} is expected, found {len(found)}"
    return found[0]


def _names(kind: str) -> set[str]:
    return {str(resource["metadata"]["name"]) for resource in _resources() if resource["kind"] == kind}


def _server_container(deployment: Yaml) -> Yaml:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return _mapping(containers[0], "container")


def _container_port(container: Yaml, port: object) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    named = {str(p["name"]): int(p["containerPort"]) for p in container["ports"] if "name" in p}
    assert port in named, f"no container port is named {port}"
    return named[str(port)]


def test_kubernetes_manifests_exist() -> None:
    kinds = {resource["kind"] for resource in _resources()}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
    } <= kinds


@pytest.mark.parametrize("path", MANIFESTS, ids=[path.name for path in MANIFESTS])
def test_kubernetes_manifest_passes_the_schema(path: Path) -> None:
    version = kubernetes_validate.latest_version()
    resources = list(_documents(path))
    assert resources, f"{path.name} holds no resource"
    problems = []
    for resource in resources:
        try:
            kubernetes_validate.validate(resource, desired_version=version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            problems.append(f"{resource['kind']} at {where or 'the top'}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(str(exc.message))
    assert not problems, f"{path.name} does not pass the schemas of Kubernetes {version}: " + "; ".join(problems)


def test_kubernetes_deployment_mounts_the_library_read_only() -> None:
    deployment = _one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _server_container(deployment)
    settings = _mapping(_one("ConfigMap")["data"], "ConfigMap data")
    mounts = {str(m["mountPath"]): m for m in container["volumeMounts"]}
    library = mounts[settings["OPDS_LIBRARY"]]
    assert library.get("readOnly") is True
    volume = next(v for v in pod["volumes"] if v["name"] == library["name"])
    claim = volume["persistentVolumeClaim"]
    assert claim.get("readOnly") is True
    pvc = _one("PersistentVolumeClaim")
    assert claim["claimName"] == pvc["metadata"]["name"]
    assert "ReadOnlyMany" in pvc["spec"]["accessModes"]
    # The root filesystem is read-only: the data dir and /tmp need volumes of their own.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {settings["OPDS_DATA_DIR"], "/tmp"} <= set(mounts)
    assert not mounts[settings["OPDS_DATA_DIR"]].get("readOnly", False)


def test_kubernetes_deployment_probes_and_commands() -> None:
    deployment = _one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _server_container(deployment)
    assert container.get("command") in (None, IMAGE_ENTRYPOINT)
    serve = _cli(container["args"])
    assert serve.command == "serve"
    assert serve.host == "0.0.0.0"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/health", probe
        assert _container_port(container, check["port"]) == serve.port, probe
    assert container["livenessProbe"]["failureThreshold"] >= container["readinessProbe"]["failureThreshold"]
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert "preStop" in container["lifecycle"]
    migrations = [_cli(c["args"]) for c in pod.get("initContainers", [])]
    assert [(m.command, m.command_name) for m in migrations] == [("db", "upgrade")]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for each in [container, *pod["initContainers"]]:
        security = each["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]


def test_kubernetes_resources_refer_to_each_other() -> None:
    deployment = _one("Deployment")
    name = deployment["metadata"]["name"]
    pod_labels = _mapping(deployment["spec"]["template"]["metadata"]["labels"], "pod labels")
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    pod = deployment["spec"]["template"]["spec"]
    for container in [*pod["containers"], *pod.get("initContainers", [])]:
        sources = container["envFrom"]
        assert {s["configMapRef"]["name"] for s in sources if "configMapRef" in s} <= _names("ConfigMap")
        assert {s["secretRef"]["name"] for s in sources if "secretRef" in s} <= _names("Secret")
        assert any("configMapRef" in s for s in sources)
        assert any("secretRef" in s for s in sources)

    service = _one("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container = _server_container(deployment)
    serve = _cli(container["args"])
    for port in service["spec"]["ports"]:
        assert _container_port(container, port["targetPort"]) == serve.port

    hpa = _one("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", name)
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]

    for budget in (r for r in _resources() if r["kind"] == "PodDisruptionBudget"):
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_kubernetes_settings_are_ones_the_server_reads() -> None:
    config = _one("ConfigMap")
    secret = _one("Secret")
    keys = set(config.get("data", {})) | set(secret.get("stringData", {})) | set(secret.get("data", {}))
    unknown = keys - KNOWN_ENV
    assert not unknown, f"settings the server does not read: {sorted(unknown)}"
    assert {"OPDS_SECRET_KEY", "DATABASE_URL"} <= set(secret["stringData"]), "secrets belong in the Secret"
    assert not {"OPDS_SECRET_KEY", "DATABASE_URL", "AWS_SECRET_ACCESS_KEY"} & set(config["data"])


# --- Dockerfile -------------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's final stage, continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    last_stage = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_stage:]


def _json_form(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    values = [arguments for name, arguments in instructions if name == keyword]
    assert values, f"the Dockerfile has no {keyword}"
    parsed = json.loads(values[-1])
    assert isinstance(parsed, list), f"{keyword} should be in exec (JSON) form"
    return [str(part) for part in parsed]


def test_dockerfile_runs_a_real_command_without_the_bootstrap() -> None:
    instructions = _instructions()
    assert instructions[0][1].startswith("python:3.11-slim")
    assert _json_form(instructions, "ENTRYPOINT") == IMAGE_ENTRYPOINT
    serve = _cli(_json_form(instructions, "CMD"))
    assert serve.command == "serve"
    assert serve.host == "0.0.0.0"
    environment = dict(
        part.partition("=")[::2] for name, arguments in instructions if name == "ENV" for part in shlex.split(arguments)
    )
    assert environment.get("OPDS_NO_BOOTSTRAP") == "1", "the server's own venv bootstrap must not run in the image"
    assert set(environment) - {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"} <= KNOWN_ENV
    assert ("EXPOSE", str(serve.port)) in instructions
    healthcheck = next(arguments for name, arguments in instructions if name == "HEALTHCHECK")
    assert f":{serve.port}/health" in healthcheck
    user = next(arguments for name, arguments in instructions if name == "USER")
    assert user.split(":")[0].isdigit(), "a numeric user, so that runAsNonRoot can check it"
    assert int(user.split(":")[0]) != 0


def test_dockerfile_installs_the_lock_with_hashes_and_copies_what_exists() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "pip install --require-hashes --no-deps -r requirements.lock" in text
    assert "pip install --no-deps ." in text
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
