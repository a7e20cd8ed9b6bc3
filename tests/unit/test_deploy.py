"""The deployment files under deploy/ are checked without a Docker engine or a cluster.

What is read: every YAML file (docker compose and Kubernetes, multi-document), the systemd units, the
Dockerfile and .dockerignore, the env and config examples, and the Grafana dashboard. What is checked:
every jumpsync command they run exists in the CLI with the options given (parsed by the CLI's own parser),
images are set, probes and grace periods fit the task limits, exactly one beat, KEDA scales Deployments that
exist on the right queue, no secret is inlined nor in a command line, Flower has basic auth, the broker Redis is
persistent and wants a password, the JumpCloud keys reach the workers only (env files, Secret references), and
the dashboard queries only jumpsync's metrics.

The YAML is read by PyYAML's SafeLoader with two refusals added: a mapping key given twice (PyYAML keeps the
last one silently), and a plain scalar that YAML 1.1 and YAML 1.2 read differently (yes/no/on/off, 0700,
22:22, dates, 1e3...): Kubernetes reads YAML 1.1 and docker compose YAML 1.2, so such a value must be quoted.
yamllint (as a library) lints every YAML file. Where the `docker compose` plugin (or the old docker-compose)
is installed, `compose config` validates the compose files too, and where systemd-analyze is installed,
`systemd-analyze verify` checks the units too: both as extra assertions inside tests that check the structure
everywhere.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from worker.names import Priority, Queue, TaskName, queue_lists

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
COMPOSE_DEMO = DEPLOY / "docker-compose.demo.yml"
K8S = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DASHBOARD = DEPLOY / "grafana" / "jumpsync-dashboard.json"

QUEUES = ("sync", "provisioning")
API_UNIT = "jumpsync-api.service"
#: What the HTTP API may be given: it records and enqueues, the workers apply; no JumpCloud key.
API_ENVIRONMENT = {"JUMPSYNC_CONFIG", "JUMPSYNC_DATABASE_URL", "JUMPSYNC_BROKER_URL", "JUMPSYNC_LOG_FORMAT",
                   "JUMPSYNC_LOG_LEVEL"}
PLACEHOLDER = "CHANGE-ME"
SECRETISH_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|AUTH|CREDENTIAL", re.I)

# The metric names of telemetry/metrics.py that the dashboard may query, with their kind.
METRICS = {
    "jumpsync_sync_runs_total": "counter",
    "jumpsync_sync_part_duration_seconds": "histogram",
    "jumpsync_sync_run_duration_seconds": "histogram",
    "jumpsync_resources": "gauge",
    "jumpsync_grants": "gauge",
    "jumpsync_api_requests_total": "counter",
    "jumpsync_api_retries_total": "counter",
    "jumpsync_provisioning_requests_total": "counter",
    "jumpsync_provisioning_oldest_pending_seconds": "gauge",
    "jumpsync_provisioning_oldest_awaiting_approval_seconds": "gauge",
    "jumpsync_last_successful_sync_timestamp_seconds": "gauge",
    "jumpsync_events_refreshes_total": "counter",
    "jumpsync_events_refresh_requests_total": "counter",
    "jumpsync_events_lag_seconds": "histogram",
}

#: Top-level packages that are not installed: the test suite and the benchmarks.
DEV_ONLY = {"tests", "bench"}


# --------------------------------------------------------------------------------------------------------
# YAML: PyYAML, refusing duplicate keys and the plain scalars that YAML 1.1 and 1.2 read differently
# --------------------------------------------------------------------------------------------------------

class YamlError(yaml.YAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice (plain PyYAML keeps the last value silently)."""

    # Importing yamllint adds a YAML 1.2 int resolver (0o17) to PyYAML's Resolver, for every loader in the
    # process (yamllint/rules/quoted_strings.py, adrienverge/yamllint#354). This loader keeps PyYAML's own
    # YAML 1.1 resolution, where 0o17 is a string: the reading _ambiguous_scalars compares with YAML 1.2's.
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if not regexp.match("0o7")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def construct_mapping(self, node, deep=False):
        seen: list[tuple[type, Any]] = []
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: overriding a merged key is what merging is for
            key = self.construct_object(key_node, deep=deep)
            if (type(key), key) in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}",
                    key_node.start_mark)
            seen.append((type(key), key))
        return super().construct_mapping(node, deep=deep)


# How YAML 1.2's core schema resolves a plain scalar (https://yaml.org/spec/1.2.2/#1032-tag-resolution);
# anything else is a string. PyYAML (YAML 1.1) gives the other reading.
_YAML12_CORE = [
    ("tag:yaml.org,2002:null", re.compile(r"null|Null|NULL|~|")),
    ("tag:yaml.org,2002:bool", re.compile(r"true|True|TRUE|false|False|FALSE")),
    ("tag:yaml.org,2002:int", re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")),
    ("tag:yaml.org,2002:float",
     re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")),
]


def _yaml12_tag(text: str) -> str:
    return next((tag for tag, pattern in _YAML12_CORE if pattern.fullmatch(text)), "tag:yaml.org,2002:str")


def _yaml12_int(text: str) -> int:
    return int(text[2:], 8) if text.startswith("0o") else int(text, 16 if text.startswith("0x") else 10)


def _ambiguous_scalars(loader: _StrictLoader, root: yaml.Node) -> Iterator[str]:
    """Where a plain (unquoted) scalar of ROOT reads differently in YAML 1.1 (PyYAML) and YAML 1.2."""
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif node.style is None and node.tag == loader.resolve(yaml.ScalarNode, node.value, (True, False)):
            tag11, tag12 = node.tag, _yaml12_tag(node.value)
            if tag11 == "tag:yaml.org,2002:merge":
                continue
            value11 = loader.construct_object(node)
            differs = tag11 != tag12 or (
                tag11 == "tag:yaml.org,2002:int" and value11 != _yaml12_int(node.value))
            if differs:
                mark = node.start_mark
                kind12 = tag12.rsplit(":", 1)[1]
                # (null and bool read the same in both; inf and nan are floats in both)
                value12 = {"int": _yaml12_int, "float": float, "str": str}[kind12](node.value)
                yield (f"{mark.name}:{mark.line + 1}:{mark.column + 1}: {node.value} unquoted is {value11!r} in "
                       f"YAML 1.1 and {value12!r} in YAML 1.2: quote it")


def load_yaml_documents(text: str, name: str = "<yaml>") -> list[Any]:
    """Every document of a YAML stream, without the empty ones."""
    loader = _StrictLoader(text)
    loader.name = name  # for the error marks
    try:
        docs = []
        while loader.check_node():
            node = loader.get_node()
            problems = list(_ambiguous_scalars(loader, node))
            if problems:
                raise YamlError("\n".join(problems))
            doc = loader.construct_document(node)
            if doc is not None:
                docs.append(doc)
        return docs
    finally:
        loader.dispose()


def load_yaml(path: Path) -> Any:
    docs = load_yaml_documents(path.read_text(), str(path.relative_to(ROOT)))
    assert len(docs) == 1, f"{path}: expected one YAML document, found {len(docs)}"
    return docs[0]


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def k8s_documents() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in sorted(K8S.rglob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in load_yaml_documents(path.read_text(), str(path.relative_to(ROOT)))]


# yamllint's default rules, with long lines allowed up to 160, no '---' required, and the YAML 1.1 booleans
# (keys too) and octal numbers refused. Every problem fails the test, warnings included.
YAMLLINT_CONFIG = YamlLintConfig("""
extends: default
rules:
  line-length: {max: 160}
  document-start: disable
  comments: {min-spaces-from-content: 1}
  truthy: {check-keys: true}
  octal-values: {forbid-implicit-octal: true, forbid-explicit-octal: true}
""")


def yamllint_problems(text: str, name: str) -> list[str]:
    return [f"{name}:{p.line}:{p.column}: [{p.level}] {p.desc} ({p.rule})"
            for p in linter.run(text, YAMLLINT_CONFIG, name)]


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path):
    docs = load_yaml_documents(path.read_text(), str(path.relative_to(ROOT)))
    assert docs and all(isinstance(doc, dict) for doc in docs), f"{path}: every document must be a mapping"


def test_yamllint():
    problems = [p for path in yaml_files() for p in yamllint_problems(path.read_text(), str(path.relative_to(ROOT)))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("text", [
    "a: 1\na: 2",                             # duplicate key
    "a:\n  b: 1\n  c: 2\n  b: 3",             # duplicate key, nested
    "- {a: 1, a: 2}",                         # duplicate key, flow mapping
    "a: yes", "a: off", "on: 1",              # booleans in YAML 1.1, strings in 1.2
    "a: 0700",                                # octal in YAML 1.1, decimal in 1.2
    "a: 0o700",                               # a string in YAML 1.1, octal in 1.2
    "a: 22:22",                               # base 60 in YAML 1.1
    "a: [2024-01-01]",                        # a date in YAML 1.1
    "a: 1e3", "a: 1_000", "a: 0b101",         # a number in one version only
    "a: 1\n---\nb: no",                       # in any document
])
def test_the_yaml_checks_catch_mistakes(text):
    with pytest.raises(yaml.YAMLError):
        load_yaml_documents(text)


def test_the_yaml_checks_let_the_unambiguous_through():
    text = "a: 'yes'\nb: \"0700\"\nc: '22:22'\nd: true\ne: 30\nf: 0.5\ng: ~\nh: 0x1F\ni: \"127.0.0.1:5555:5555\"\n"
    assert load_yaml_documents(text) == [
        {"a": "yes", "b": "0700", "c": "22:22", "d": True, "e": 30, "f": 0.5, "g": None, "h": 31,
         "i": "127.0.0.1:5555:5555"}]
    assert load_yaml_documents("base: &b {x: 1}\nderived:\n  <<: *b\n  x: 2\n---\n") == [
        {"base": {"x": 1}, "derived": {"x": 2}}]


def test_the_yamllint_config_refuses_yaml_1_1_booleans_and_octals():
    for text, rule in [("a: yes\n", "truthy"), ("on: 1\n", "truthy"), ("a: 0700\n", "octal-values"),
                       ("a: 0o700\n", "octal-values"), ("a: 1\na: 2\n", "key-duplicates")]:
        assert any(f"({rule})" in p for p in yamllint_problems(text, "x.yaml")), (text, rule)
    assert yamllint_problems("a: 'yes'\nb: \"0700\"\nc: true\n", "x.yaml") == []


# --------------------------------------------------------------------------------------------------------
# Commands: every jumpsync invocation parses with the CLI's own parser
# --------------------------------------------------------------------------------------------------------

def _cli_root():
    import typer

    from cli.main import app

    return typer.main.get_command(app)


def cli_error(args: list[str]) -> str | None:
    """None when `jumpsync ARGS` is a command line the CLI accepts (subcommand, options, values)."""
    import typer

    cmd, path, args = _cli_root(), "jumpsync", list(args)
    while hasattr(cmd, "commands"):
        if not args or args[0].startswith("-"):
            return f"{path}: a subcommand is needed, got {args[:1]}"
        name, args = args[0], args[1:]
        sub = cmd.commands.get(name)
        if sub is None:
            return f"{path} has no command {name!r} (it has {', '.join(sorted(cmd.commands))})"
        cmd, path = sub, f"{path} {name}"
    try:
        cmd.make_context(path, args)
    except typer.TyperException as exc:
        return f"{path} {' '.join(args)}: {exc.format_message()}"
    return None


def dockerfile_entrypoint() -> list[str]:
    for instruction, arg in dockerfile_instructions():
        if instruction == "ENTRYPOINT":
            entry = json.loads(arg)
    return entry


_SHELL_VAR = re.compile(r"\$\{(\w+)[^}]*\}|\$(\w+)")


def jumpsync_invocations(argv: list[str], where: str) -> Iterator[list[str]]:
    """The argument lists of every `jumpsync` that ARGV runs, itself or through `sh -c`."""
    if not argv:
        return
    if Path(argv[0]).name == "jumpsync":
        yield list(argv[1:])
    elif Path(argv[0]).name in ("sh", "bash", "dash") and len(argv) >= 3 and argv[1] == "-c":
        script = argv[2]
        assert "$(" not in script and "`" not in script, (
            f"{where}: {script!r}: command substitution in a shell probe (Kubernetes' $(VAR) is not expanded "
            "there: the shell would run VAR as a command; use ${VAR})")
        script = _SHELL_VAR.sub("value", script)
        lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        segment: list[str] = []
        for token in list(lexer) + [";"]:
            if token and set(token) <= set(";&|"):
                while segment and segment[0] in ("exec", "env", "nice"):
                    segment = segment[1:]
                if segment and Path(segment[0]).name == "jumpsync":
                    yield segment[1:]
                segment = []
            else:
                segment.append(token)


def compose_invocations(path: Path) -> Iterator[tuple[str, list[str]]]:
    base = load_yaml(COMPOSE)["services"]
    for name, service in load_yaml(path)["services"].items():
        image = service.get("image") or base.get(name, {}).get("image", "")
        # The entrypoint of our image is jumpsync; other images' entrypoints are theirs.
        entry = dockerfile_entrypoint() if "jumpsync" in image else []
        command = service.get("command")
        if command is not None or "entrypoint" in service:
            assert command is None or isinstance(command, list), f"{path}: {name}: write command as a list"
            argv = list(service.get("entrypoint", entry)) + list(command or [])
            yield f"{path.name}: {name}", argv
        test = (service.get("healthcheck") or {}).get("test")
        if test:
            test = [t.replace("$$", "$") for t in test]  # compose's escape for a literal $
            if test[0] == "CMD":
                yield f"{path.name}: {name} healthcheck", test[1:]
            elif test[0] == "CMD-SHELL":
                yield f"{path.name}: {name} healthcheck", ["sh", "-c", test[1]]


def k8s_containers() -> Iterator[tuple[str, dict, dict, dict]]:
    """(where, document, pod spec, container) of every container of every workload."""
    for path, doc in k8s_documents():
        if doc.get("kind") in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            spec = doc["spec"]["template"]["spec"]
            for container in spec.get("initContainers", []) + spec.get("containers", []):
                yield f"{path.name}: {doc['metadata']['name']}/{container['name']}", doc, spec, container


def k8s_invocations() -> Iterator[tuple[str, list[str]]]:
    entry = dockerfile_entrypoint()
    for where, _doc, _spec, container in k8s_containers():
        yield where, list(container.get("command") or entry) + list(container.get("args") or [])
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            exec_ = (container.get(probe) or {}).get("exec")
            if exec_:
                yield f"{where} {probe}", list(exec_["command"])


def systemd_units() -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Every unit file: section -> [(key, value)] in order (keys may repeat, as systemd allows)."""
    units = {}
    for path in sorted(SYSTEMD.glob("*.service")):
        sections: dict[str, list[tuple[str, str]]] = {}
        section = None
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                sections.setdefault(section, [])
                continue
            key, _, value = line.partition("=")
            assert section is not None and _, f"{path}: {line!r} is outside a section or has no '='"
            sections[section].append((key.strip(), value.strip()))
        units[path.name] = sections
    return units


def unit_values(unit: dict, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def unit_value(unit: dict, section: str, key: str) -> str | None:
    values = unit_values(unit, section, key)
    return values[-1] if values else None


def _systemd_instances(name: str) -> list[str]:
    return list(QUEUES) if name.endswith("@.service") else [""]


def systemd_invocations() -> Iterator[tuple[str, list[str]]]:
    for name, unit in systemd_units().items():
        defaults = dict(v.split("=", 1) for v in unit_values(unit, "Service", "Environment"))
        for instance in _systemd_instances(name):
            for key in ("ExecStartPre", "ExecStart", "ExecStartPost", "ExecStop", "ExecReload"):
                for line in unit_values(unit, "Service", key):
                    line = line.lstrip("-@:+!").replace("%i", instance).replace("%I", instance)
                    line = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                                  lambda m, env=defaults: env.get(m.group(1) or m.group(2), "value"), line)
                    yield f"{name} {key} ({instance or 'no instance'})", shlex.split(line)


def all_invocations() -> list[tuple[str, list[str]]]:
    found = []
    for where, argv in [*compose_invocations(COMPOSE), *compose_invocations(COMPOSE_DEMO), *k8s_invocations(),
                        *systemd_invocations()]:
        found.extend((where, args) for args in jumpsync_invocations(argv, where))
    return found


def test_every_jumpsync_command_in_deploy_exists_in_the_cli():
    found = all_invocations()
    errors = [f"{where}: {error}" for where, args in found if (error := cli_error(args))]
    assert not errors, "\n".join(errors)
    used = {tuple(a for a in args if not a.startswith("-"))[:2] for _, args in found}
    # What the deployments are made of: each of these runs somewhere (worker per queue checked elsewhere).
    for needed in [("db", "upgrade"), ("worker",), ("beat",), ("flower",), ("health",), ("simulator",), ("api",)]:
        assert any(u[: len(needed)] == needed for u in used), f"no deployment runs jumpsync {' '.join(needed)}"


def test_the_cli_check_catches_mistakes():
    assert cli_error(["worker", "--queues", "sync", "--concurrency", "4"]) is None
    assert cli_error(["db", "upgrade"]) is None
    assert "no command" in cli_error(["wrker"])
    assert "no command" in cli_error(["db", "migrate"])
    assert cli_error(["worker", "--no-such-option"])
    assert cli_error(["worker", "--concurrency", "four"])
    argv = ["sh", "-c", "exec jumpsync health --worker \"sync@${HOSTNAME}\" && echo ok"]
    assert list(jumpsync_invocations(argv, "x")) == [["health", "--worker", "sync@value"]]
    with pytest.raises(AssertionError, match="command substitution"):
        list(jumpsync_invocations(["sh", "-c", "jumpsync health --worker sync@$(HOSTNAME)"], "x"))


# --------------------------------------------------------------------------------------------------------
# docker compose
# --------------------------------------------------------------------------------------------------------

def go_duration(text: str) -> float:
    """Seconds of a compose duration such as 75m, 1h15m or 30s."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"not a duration: {text!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    return sum(float(n) * scale[u] for n, u in parts)


def part_time_limit(toml_text: str) -> float:
    from config.settings import parse_duration

    sync = tomllib.loads(toml_text).get("sync", {})
    return parse_duration(sync.get("part_time_limit", "1h")).total_seconds()


def compose_environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: {line!r} is not VAR=value"
            values[key] = value
    return values


def worker_queue(args: list[str]) -> str:
    for i, arg in enumerate(args):
        if arg in ("--queues", "-Q"):
            return args[i + 1]
        if arg.startswith("--queues="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"a worker without --queues consumes every queue: {args}")


def _check_compose_interpolation(path: Path) -> None:
    """A $ meant for the container must be written $$; only the documented variables are interpolated."""
    allowed = {"JUMPSYNC_IMAGE"}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for m in re.finditer(r"\$(\$|\{(\w+)[^}]*\}|(\w+))", line):
            name = m.group(2) or m.group(3)
            if m.group(1) != "$":
                assert name in allowed, (f"{path.name}:{number}: ${name} is substituted by compose from the shell "
                                         "that runs it; write $$ for the container's own variable")


def _compose_cli() -> list[str] | None:
    """`docker compose` (v2) where the plugin is installed, else the old `docker-compose` (v1), else None."""
    if shutil.which("docker"):
        try:
            if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
                return ["docker", "compose"]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return ["docker-compose"] if shutil.which("docker-compose") else None


def _run_compose_config(cli: list[str], tmp_path: Path, *files: Path) -> None:
    """`compose config` on a copy of deploy/ with the env files made from their examples."""
    work = tmp_path / "deploy"
    shutil.copytree(DEPLOY, work)
    for example in work.glob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    if cli == ["docker-compose"]:
        # Compose v1 predates the top-level `name`, the only newer key these files use.
        for f in files:
            path = work / f.name
            path.write_text(re.sub(r"(?m)^name: .*\n", "", path.read_text()))
    args = cli + [x for f in files for x in ("-f", str(work / f.name))] + ["config", "-q"]
    result = subprocess.run(args, cwd=work, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}{result.stderr}"


def _check_compose_services(compose: dict) -> None:
    """Every service: an image, named volumes declared, env files with their examples, known dependencies."""
    services = compose["services"]
    for name, service in services.items():
        assert service.get("image"), f"{name}: no image"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose.get("volumes", {}), f"{name}: volume {source} is not declared"
        for env_file in service.get("env_file", []):
            assert (DEPLOY / f"{env_file}.example").exists(), f"{name}: no {env_file}.example beside {env_file}"
        for dep, how in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on an unknown service {dep}"
            assert how["condition"] in ("service_started", "service_healthy", "service_completed_successfully")
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy: it has no healthcheck"


def _check_compose_worker(service: dict, name: str, queue: str, migrate: str) -> None:
    """A worker starts after the migration, its healthcheck pings it by name, its metrics directory is a tmpfs."""
    assert service["depends_on"][migrate]["condition"] == "service_completed_successfully"
    test = service["healthcheck"]["test"]
    assert "jumpsync health" in " ".join(test) and f"--worker \"{queue}@$${{HOSTNAME}}\"" in test[-1], \
        f"{name}: the healthcheck pings this worker by its node name {queue}@$HOSTNAME"
    env = compose_environment(service)
    if env.get("JUMPSYNC_METRICS_PORT"):
        multiproc = env.get("PROMETHEUS_MULTIPROC_DIR")
        assert multiproc and any(t.split(":")[0] == multiproc for t in service.get("tmpfs", [])), \
            f"{name}: PROMETHEUS_MULTIPROC_DIR must be an empty tmpfs"


def redis_server_start(command: list[str]) -> tuple[list[str], str]:
    """The redis-server command line a compose `sh -c` script runs, and the configuration it feeds on stdin."""
    assert command[:2] == ["sh", "-c"], f"Redis starts through sh, which feeds it its password: {command}"
    first, _, rest = command[2].replace("$$", "$").partition("\n")  # $$: compose's escape for a literal $
    words = shlex.split(first)
    assert words[-1] == "<<EOF" and rest.rstrip().endswith("EOF"), f"a here-document holds the config: {first!r}"
    argv = words[words.index("redis-server"):-1]
    return argv, rest.rstrip().removesuffix("EOF")


def test_compose_file(tmp_path):
    """The structure of docker-compose.yml; `docker compose config` too where the compose plugin (or the old
    docker-compose) is installed. Where neither is, the checks below are all there is, and they always run."""
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    _check_compose_interpolation(COMPOSE)
    part_limit = part_time_limit((DEPLOY / "jumpsync.example.toml").read_text())

    # Redis: the broker must keep its messages, and wants a password that is in no command line.
    redis = services["redis"]
    argv, config = redis_server_start(redis["command"])
    options = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i].startswith("--")}
    assert options.get("--appendonly") == "yes", "Redis needs the append-only file on"
    assert options.get("--maxmemory-policy") == "noeviction", "Redis must never evict the broker's keys"
    assert any(v.endswith(":/data") for v in redis["volumes"]), "Redis data on a volume"
    assert "--requirepass" not in argv and argv[-1] == "-", \
        "Redis's password goes in its configuration on stdin ('-', last: the image's entrypoint adds options)"
    password = re.fullmatch(r"requirepass \$\{(\w+):\?[^}]+\}", config.strip())
    assert password, f"Redis reads requirepass from a variable, and refuses to start without it: {config!r}"
    redis_env = {k: v for f in redis.get("env_file", []) for k, v in env_file_values(DEPLOY / f"{f}.example").items()}
    assert password.group(1) in redis_env, f"{password.group(1)} is in none of Redis's env files"
    health = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH=" in health and " -a " not in health, "redis-cli's password from REDISCLI_AUTH, not -a"
    broker_url = env_file_values(DEPLOY / "jumpsync.env.example")["JUMPSYNC_BROKER_URL"]
    assert re.match(r"redis://:[^@]+@redis:", broker_url), f"the broker URL carries Redis's password: {broker_url}"
    assert services["postgres"]["volumes"] and "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])

    _check_compose_services(compose)

    entry = dockerfile_entrypoint()
    jumpsync_services = {name: s for name, s in services.items() if s.get("image", "").find("jumpsync") >= 0}
    roles = {name: list(s.get("entrypoint", entry)) + s["command"] for name, s in jumpsync_services.items()}

    # Migrations once, before the workers.
    migrate = [n for n, argv in roles.items() if argv[1:3] == ["db", "upgrade"]]
    assert len(migrate) == 1, f"one migrate service, found {migrate}"
    assert services[migrate[0]]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services[migrate[0]].get("restart") == "no"

    # A worker per queue, each after the migration, with a health check that pings that worker by name and
    # a stop grace period longer than its longest task.
    workers = {worker_queue(argv): n for n, argv in roles.items() if argv[1] == "worker"}
    assert sorted(workers) == sorted(QUEUES), f"one worker service per queue, found {workers}"
    for queue, name in workers.items():
        _check_compose_worker(services[name], name, queue, migrate[0])
    sync_grace = go_duration(services[workers["sync"]]["stop_grace_period"])
    assert sync_grace >= 600 and sync_grace > part_limit + 60, \
        f"sync worker: stop_grace_period {sync_grace}s must outlast a part ({part_limit}s + 60s)"
    assert go_duration(services[workers["provisioning"]]["stop_grace_period"]) >= 60

    # Exactly one beat, never scaled.
    beats = [n for n, argv in roles.items() if argv[1] == "beat"]
    assert len(beats) == 1, f"exactly one beat, found {beats}"
    assert services[beats[0]].get("deploy", {}).get("replicas", 1) == 1
    assert "healthcheck" in services[beats[0]]

    # Flower: basic auth on, published on loopback only.
    flowers = [n for n, argv in roles.items() if argv[1] == "flower"]
    assert len(flowers) == 1
    flower = services[flowers[0]]
    env = {**{k: v for f in flower.get("env_file", []) for k, v in env_file_values(DEPLOY / f"{f}.example").items()},
           **compose_environment(flower)}
    assert re.fullmatch(r"[^:,]+:.+", env.get("JUMPSYNC_FLOWER_BASIC_AUTH", "")), "Flower without basic auth"
    for port in flower.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"Flower's /metrics is unauthenticated: publish {port} on loopback"
    assert "healthcheck" in flower

    for name, service in jumpsync_services.items():
        if name not in migrate:
            assert service.get("restart") in ("unless-stopped", "always", "on-failure"), f"{name}: no restart policy"
            assert "stop_grace_period" in service, f"{name}: no stop_grace_period"

    cli = _compose_cli()
    if cli:
        _run_compose_config(cli, tmp_path / "main", COMPOSE)
        _run_compose_config(cli, tmp_path / "demo", COMPOSE, COMPOSE_DEMO)


def test_compose_demo_override():
    """The demo keeps the simulator on loopback: it owns a network namespace that the workers join."""
    base = load_yaml(COMPOSE)["services"]
    demo = load_yaml(COMPOSE_DEMO)["services"]
    _check_compose_interpolation(COMPOSE_DEMO)
    assert set(demo) - {"simulator"} <= set(base), "the demo overrides only services of docker-compose.yml"
    entry = dockerfile_entrypoint()
    simulator = demo["simulator"]
    argv = list(simulator.get("entrypoint", entry)) + simulator["command"]
    host = argv[argv.index("--host") + 1]
    assert host in ("127.0.0.1", "localhost", "::1"), "the simulator's /_sim endpoints take no key: loopback only"
    for name, service in base.items():
        if service.get("command", [None])[0] == "worker":
            assert demo[name]["network_mode"] == "service:simulator", f"{name} must share the simulator's namespace"
    ports = [{**compose_environment(base[n]), **compose_environment(demo[n])}.get("JUMPSYNC_METRICS_PORT")
             for n in demo if demo[n].get("network_mode") == "service:simulator"]
    assert len(ports) == len(set(ports)), f"workers in one network namespace need distinct metrics ports: {ports}"
    for service in demo.values():
        for volume in service.get("volumes", []):
            assert (DEPLOY / volume.split(":", 1)[0]).exists()


# --------------------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------------------

def k8s_by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc["kind"] == kind}


def _configmap_toml() -> str:
    (configmap,) = k8s_by_kind("ConfigMap").values()
    return configmap["data"]["jumpsync.toml"]


def _container_env(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def _deployments_by_role() -> dict[str, tuple[dict, dict]]:
    """'worker:sync', 'worker:provisioning', 'beat', 'flower' -> (Deployment, its jumpsync container)."""
    entry = dockerfile_entrypoint()
    roles = {}
    for name, doc in k8s_by_kind("Deployment").items():
        for container in doc["spec"]["template"]["spec"]["containers"]:
            argv = list(container.get("command") or entry) + list(container.get("args") or [])
            for args in jumpsync_invocations(argv, name):
                role = args[0] if args[0] != "worker" else f"worker:{worker_queue(args)}"
                assert role not in roles, f"two Deployments run {role}"
                roles[role] = (doc, container)
    return roles


def kustomization_resources() -> list[str]:
    return load_yaml(K8S / "kustomization.yaml")["resources"]


def test_kustomization_lists_every_manifest():
    """What `kubectl kustomize deploy/kubernetes` would refuse, checked without kubectl: a Kustomization whose
    resources are files in its directory that parse, each document an object with apiVersion, kind and
    metadata.name, and no object twice."""
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert kustomization.get("apiVersion") == "kustomize.config.k8s.io/v1beta1"
    assert kustomization.get("kind") == "Kustomization"
    listed = kustomization_resources()
    assert isinstance(listed, list) and all(isinstance(r, str) for r in listed), listed
    assert len(listed) == len(set(listed)), f"a resource listed twice: {listed}"
    for resource in listed:
        assert (K8S / resource).resolve().parent == K8S.resolve(), f"{resource}: not a file beside kustomization.yaml"
        assert (K8S / resource).is_file(), f"kustomization.yaml lists a missing {resource}"
    top = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
                 and not p.name.endswith(".example.yaml"))
    assert sorted(listed) == top, "every manifest beside kustomization.yaml is in its resources"
    assert not [r for r in listed if "example" in r], \
        "an example (placeholder Secret) in the resources would overwrite the real one at every apply"
    assert "namespace" not in kustomization, "no namespace: the operator chooses it"
    for path, doc in k8s_documents():
        assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), path
        assert "namespace" not in doc["metadata"], f"{path}: namespace-less manifests"
    assert {doc["kind"] for path, doc in k8s_documents() if path.name.endswith(".example.yaml")} == {"Secret"}

    # What the kustomization builds, and each file outside it (the Secret example, extras/) applied alone:
    # one object per kind and name, as kustomize and `kubectl apply` require.
    built = [(path, doc) for path, doc in k8s_documents() if path.parent == K8S and path.name in listed]
    assert {path.name for path, _ in built} == set(listed), "every resource file holds at least one object"
    groups = [built] + [[(path, doc) for path, doc in k8s_documents() if path == other]
                        for other in sorted({path for path, _ in k8s_documents()} - {path for path, _ in built})]
    for group in groups:
        ids = [(doc["kind"], doc["metadata"]["name"]) for _, doc in group]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        assert not duplicates, f"{sorted({p.name for p, _ in group})}: defined twice: {duplicates}"


def _check_k8s_container(where: str, spec: dict, container: dict, configmaps: dict, secrets: dict) -> None:
    """Non-root, read-only, no capabilities, limits, a /tmp emptyDir, config and Secrets that exist."""
    assert container.get("image"), f"{where}: no image"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0, where
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False, where
    assert security["capabilities"]["drop"] == ["ALL"], where
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], where
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]["name"]], f"{where}: /tmp emptyDir"
    env = _container_env(container)
    assert env["JUMPSYNC_CONFIG"]["value"].startswith(
        next(p for p, m in mounts.items() if "configMap" in volumes[m["name"]])), f"{where}: config not mounted"
    for volume in volumes.values():
        if "configMap" in volume:
            assert volume["configMap"]["name"] in configmaps, f"{where}: unknown ConfigMap"
    for item in env.values():
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] in secrets and ref["key"] in secrets[ref["name"]]["stringData"], \
                f"{where}: {item['name']} refers to a missing Secret key {ref}"
    for source in container.get("envFrom", []):
        assert source["secretRef"]["name"] in secrets, f"{where}: envFrom an unknown Secret"
    if "PROMETHEUS_MULTIPROC_DIR" in env:
        path = env["PROMETHEUS_MULTIPROC_DIR"]["value"]
        assert path in mounts and "emptyDir" in volumes[mounts[path]["name"]], \
            f"{where}: PROMETHEUS_MULTIPROC_DIR must be an emptyDir (empty at every start)"
        port = int(env["JUMPSYNC_METRICS_PORT"]["value"])
        assert any(p["containerPort"] == port for p in container.get("ports", [])), f"{where}: metrics port"


def _check_k8s_role(role: str, spec: dict, container: dict, part_limit: float) -> None:
    """Selector, probes that ping the worker itself, a grace period that outlasts a part, KEDA-owned replicas."""
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items(), f"{role}: selector does not match"
    for probe in ("livenessProbe", "readinessProbe"):
        assert probe in container, f"{role}: no {probe}"
        if role.startswith("worker:"):
            queue = role.split(":")[1]
            (args,) = jumpsync_invocations(container[probe]["exec"]["command"], role)
            assert args[:1] == ["health"] and args[args.index("--worker") + 1] == f"{queue}@value", \
                f"{role}: {probe} must ping this worker: jumpsync health --worker {queue}@${{HOSTNAME}}"
            assert container[probe]["timeoutSeconds"] >= 10, f"{role}: a ping takes seconds"
    grace = spec["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    if role == "worker:sync":
        assert grace >= 600 and grace > part_limit + 60, \
            f"sync worker: terminationGracePeriodSeconds {grace} must outlast a part ({part_limit}s + 60s)"
    if role == "worker:provisioning":
        assert grace >= 60
    if role.startswith("worker:"):
        assert "replicas" not in spec, f"{role}: KEDA owns the replica count; leave replicas out"
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_kubernetes_workloads():
    roles = _deployments_by_role()
    assert sorted(roles) == ["api", "beat", "flower", "worker:provisioning", "worker:sync"], sorted(roles)
    configmaps, secrets = k8s_by_kind("ConfigMap"), k8s_by_kind("Secret")
    part_limit = part_time_limit(_configmap_toml())

    for where, _doc, spec, container in k8s_containers():
        _check_k8s_container(where, spec, container, configmaps, secrets)

    for role, (doc, container) in roles.items():
        _check_k8s_role(role, doc["spec"], container, part_limit)

    beat = roles["beat"][0]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate", "exactly one beat, never two at once"

    # Flower: basic auth from the Secret, not published outside the cluster.
    flower_env = _container_env(roles["flower"][1])
    assert "secretKeyRef" in flower_env["JUMPSYNC_FLOWER_BASIC_AUTH"]["valueFrom"], "Flower without basic auth"
    flower_labels = roles["flower"][0]["spec"]["template"]["metadata"]["labels"]
    services = k8s_by_kind("Service")
    flower_services = [s for s in services.values() if s["spec"]["selector"].items() <= flower_labels.items()]
    assert flower_services and all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in flower_services), \
        "Flower's /metrics is unauthenticated: keep its Service ClusterIP"

    # The workers' metrics: a Service over their metrics port.
    for role in ("worker:sync", "worker:provisioning"):
        labels = roles[role][0]["spec"]["template"]["metadata"]["labels"]
        assert any(s["spec"]["selector"].items() <= labels.items()
                   and any(p.get("targetPort") == "metrics" for p in s["spec"]["ports"]) for s in services.values()), \
            f"{role}: no Service over its metrics port"

    (job,) = k8s_by_kind("Job").values()
    (args,) = jumpsync_invocations(job["spec"]["template"]["spec"]["containers"][0]["command"]
                                   + job["spec"]["template"]["spec"]["containers"][0]["args"], "job")
    assert args == ["db", "upgrade"]


def test_keda_scales_each_worker_on_its_queue():
    roles = _deployments_by_role()
    deployments = k8s_by_kind("Deployment")
    auths = k8s_by_kind("TriggerAuthentication")
    secrets = k8s_by_kind("Secret")
    scaled = k8s_by_kind("ScaledObject")
    targets = {}
    for name, obj in scaled.items():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        target = obj["spec"]["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment" and target["name"] in deployments, \
            f"{name} scales a missing Deployment {target['name']}"
        assert obj["spec"]["minReplicaCount"] >= 1, f"{name}: keep a consumer on every queue"
        assert obj["spec"]["maxReplicaCount"] >= obj["spec"]["minReplicaCount"]
        triggers = obj["spec"]["triggers"]
        targets[target["name"]] = [trigger["metadata"]["listName"] for trigger in triggers]
        for trigger in triggers:
            assert trigger["type"] == "redis"
            assert isinstance(trigger["metadata"]["listLength"], str), "KEDA metadata values are strings"
            auth = auths[trigger["authenticationRef"]["name"]]
            for ref in auth["spec"]["secretTargetRef"]:
                assert ref["key"] in secrets[ref["name"]]["stringData"], f"{name}: missing Secret key {ref}"
    for queue in QUEUES:
        doc = roles[f"worker:{queue}"][0]
        # Every list the queue's messages wait in (one a priority step); the provisioning tasks use one step.
        lists = queue_lists(Queue(queue)) if queue == Queue.SYNC else [queue]
        assert targets.get(doc["metadata"]["name"]) == lists, \
            f"{doc['metadata']['name']} needs a ScaledObject on the Redis lists {lists!r}"
    assert {TaskName(t).priority for t in TaskName if TaskName(t).queue == Queue.PROVISIONING} == {Priority.UPKEEP}


# --------------------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------------------

def _looks_secret(name: str, value: Any) -> str | None:
    value = str(value)
    if PLACEHOLDER in value:
        return None
    if re.search(r"://[^/@:\s]+:[^/@\s]+@", value):
        return "a URL with a password"
    if SECRETISH_NAME.search(name) and value and not value.startswith("/"):
        return "a literal value for a secret-looking name"
    if re.fullmatch(r"[A-Za-z0-9+=_\-]{24,}", value) and re.search(r"\d", value) and re.search(r"[A-Za-z]", value):
        return "a value that looks like a key"
    return None


def _inline_secrets() -> list[str]:
    """Environment values in compose files, Kubernetes containers and systemd units that look like secrets."""
    problems = []
    for file in (COMPOSE, COMPOSE_DEMO):
        for name, service in load_yaml(file)["services"].items():
            for var, value in compose_environment(service).items():
                if why := _looks_secret(var, value):
                    problems.append(f"{file.name}: {name}: {var}: {why}")
    for where, _doc, _spec, container in k8s_containers():
        for item in container.get("env", []):
            if "value" in item and (why := _looks_secret(item["name"], item["value"])):
                problems.append(f"{where}: {item['name']}: {why}")
    for name, unit in systemd_units().items():
        for line in unit_values(unit, "Service", "Environment"):
            var, _, value = line.partition("=")
            if why := _looks_secret(var, value):
                problems.append(f"{name}: {var}: {why}")
    return problems


def _key_shaped_strings() -> list[str]:
    """Anything under deploy/ shaped like a JumpCloud key (40 hex digits, or the jca_ form)."""
    return [f"{path.relative_to(ROOT)}: {m.group(0)[:6]}... looks like an API key"
            for path in DEPLOY.rglob("*") if path.is_file()
            for m in re.finditer(r"\b(jca_\w{20,}|[0-9a-f]{40})\b", path.read_text())]


def _examples_without_placeholders() -> list[str]:
    """Secret-looking values of the example env files and the example Secret that are not placeholders."""
    problems = []
    for example in DEPLOY.rglob("*.env.example"):
        for var, value in env_file_values(example).items():
            secretish = SECRETISH_NAME.search(var) or "://" in value and "@" in value
            if secretish and PLACEHOLDER not in value:
                problems.append(f"{example.relative_to(ROOT)}: {var} must be a {PLACEHOLDER} placeholder")
    for secret in k8s_by_kind("Secret").values():
        for var, value in secret["stringData"].items():
            if PLACEHOLDER not in str(value):
                problems.append(f"Secret {secret['metadata']['name']}: {var} must be a {PLACEHOLDER} placeholder")
    return problems


def test_no_secret_is_inlined():
    problems = _inline_secrets() + _key_shaped_strings() + _examples_without_placeholders()
    assert not problems, "\n".join(problems)


def test_secrets_come_from_files_and_environment():
    """Units read an environment file; the Secret holds placeholders as stringData; configs name where a key is."""
    for name, unit in systemd_units().items():
        assert unit_values(unit, "Service", "EnvironmentFile")[0] == "/etc/jumpsync/jumpsync.env", name
    for secret in k8s_by_kind("Secret").values():
        assert "data" not in secret, "the example Secret uses stringData placeholders, no base64 data"
    tomls = [(p.read_text(), p.name) for p in DEPLOY.glob("*.toml")] + [(_configmap_toml(), "ConfigMap")]
    for toml_text, where in tomls:
        data = tomllib.loads(toml_text)
        assert "database_url" not in data and "broker_url" not in data, f"{where}: URLs with passwords go in env"
        for connector in data.get("connectors", []):
            assert set(connector) & {"api_key_env", "api_key_file"} and "api_key" not in connector, where


def test_example_configs_are_valid(tmp_path):
    from config.settings import load_file_config

    sources = {p.name: p.read_text() for p in DEPLOY.glob("*.toml")}
    sources["configmap jumpsync.toml"] = _configmap_toml()
    for name, text in sources.items():
        path = tmp_path / "jumpsync.toml"
        path.write_text(text)
        config = load_file_config(path, required=True)
        assert config.connectors, f"{name}: no connector"


# --------------------------------------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------------------------------------

def systemd_seconds(text: str) -> float:
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(min|ms|us|sec|s|m|h|hr|d)?", text)
    scale = {"": 1, "s": 1, "sec": 1, "ms": 0.001, "us": 0.000001, "min": 60, "m": 60, "h": 3600, "hr": 3600,
             "d": 86400}
    return sum(float(n) * scale[u] for n, u in parts)


def test_systemd_units(tmp_path):
    """The units' structure; `systemd-analyze verify` too where systemd-analyze is installed. Where it is not,
    the checks below are all there is, and they always run."""
    units = systemd_units()
    assert {"jumpsync-worker@.service", "jumpsync-beat.service", "jumpsync-flower.service",
            "jumpsync-migrate.service"} <= set(units)
    part_limit = part_time_limit((DEPLOY / "jumpsync.example.toml").read_text())
    for name, unit in units.items():
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment]
        parser.read_string((SYSTEMD / name).read_text(), source=name)
        assert parser.has_section("Unit") and parser.has_section("Service"), name
        service = parser["Service"]
        assert service["User"] and service["User"] != "root", f"{name}: a dedicated user"
        assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict", f"{name}: hardening"
        assert service["ProtectHome"] == "yes" and service["PrivateTmp"] == "yes", f"{name}: hardening"
        assert service["CapabilityBoundingSet"] == "", f"{name}: no capabilities"
        exec_start = service["ExecStart"]
        assert shlex.split(exec_start)[0].startswith("/") and shlex.split(exec_start)[0].endswith("/jumpsync"), name
        if service.get("Type") != "oneshot":
            assert service["KillSignal"] == "SIGTERM" and service["Restart"] in ("on-failure", "always"), name
            assert unit_value(unit, "Install", "WantedBy") == "multi-user.target", name
    worker = units["jumpsync-worker@.service"]
    assert systemd_seconds(unit_value(worker, "Service", "TimeoutStopSec")) > part_limit + 60, \
        "the worker's TimeoutStopSec must outlast a sync part"
    assert unit_value(worker, "Service", "KillMode") == "mixed", \
        "SIGTERM to the main process only, or the pool processes die with their tasks"
    assert "--queues %i" in unit_value(worker, "Service", "ExecStart"), "the instance name is the queue"
    assert "/run/" in next(v for v in unit_values(worker, "Service", "Environment")
                           if v.startswith("PROMETHEUS_MULTIPROC_DIR="))
    assert unit_value(worker, "Service", "RuntimeDirectory"), "an empty multiprocess directory at every start"
    migrate = units["jumpsync-migrate.service"]
    assert unit_value(migrate, "Service", "Type") == "oneshot"
    for name in ("jumpsync-worker@.service", "jumpsync-beat.service"):
        assert "jumpsync-migrate.service" in unit_value(units[name], "Unit", "After"), name
        assert "jumpsync-migrate.service" in unit_value(units[name], "Unit", "Wants"), name
        assert not unit_values(units[name], "Unit", "Requires"), f"{name}: a failed migration must not block it"
    flower = units["jumpsync-flower.service"]
    args = shlex.split(unit_value(flower, "Service", "ExecStart"))
    assert args[args.index("--address") + 1] == "127.0.0.1", "Flower on loopback, behind a TLS proxy"
    assert "JUMPSYNC_FLOWER_BASIC_AUTH" in env_file_values(DEPLOY / "flower.env.example")
    assert "/etc/jumpsync/flower.env" in unit_values(flower, "Service", "EnvironmentFile"), \
        "Flower's login file is required (no '-'): without it the unit does not start"
    for example in SYSTEMD.glob("worker-*.env.example"):
        queue = example.name[len("worker-"): -len(".env.example")]
        assert queue in QUEUES and int(env_file_values(example)["JUMPSYNC_WORKER_CONCURRENCY"]) >= 1
    ports = [env_file_values(e)["JUMPSYNC_METRICS_PORT"] for e in SYSTEMD.glob("worker-*.env.example")]
    assert len(ports) == len(set(ports)), "two workers on one host need distinct metrics ports"

    analyze = shutil.which("systemd-analyze")
    if analyze:
        _systemd_analyze_verify(analyze, tmp_path)


def _systemd_analyze_verify(analyze: str, tmp_path: Path) -> None:
    """systemd's own check of the units, with ExecStart pointed at this checkout's jumpsync."""
    jumpsync = ROOT / ".venv" / "bin" / "jumpsync"
    if not jumpsync.exists():
        jumpsync = Path(shutil.which("jumpsync") or "/nonexistent")
    files = []
    for path in sorted(SYSTEMD.glob("*.service")):
        text = path.read_text().replace("/opt/jumpsync/venv/bin/jumpsync", str(jumpsync))
        (tmp_path / path.name).write_text(text)
        for instance in _systemd_instances(path.name):
            name = path.name.replace("@.", f"@{instance}.")
            (tmp_path / name).write_text(text)
            files.append(str(tmp_path / name))
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}
    result = subprocess.run([analyze, "verify", *files], capture_output=True, text=True, env=env, timeout=120)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output


# --------------------------------------------------------------------------------------------------------
# The image
# --------------------------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arg = line.partition(" ")
            out.append((instruction.upper(), arg.strip()))
    return out


def test_dockerfile():
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for i, a in instructions if i == "ARG" and "=" in a)
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], a).split()[0] for i, a in instructions if i == "FROM"]
    assert bases and all(b == "python:3.11-slim" for b in bases), bases
    users = [a for i, a in instructions if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image runs as a non-root user"
    assert users[-1].split(":")[0].isdigit(), "a numeric USER lets Kubernetes check runAsNonRoot"
    assert dockerfile_entrypoint() == ["jumpsync"]
    installs = [a for i, a in instructions if i == "RUN" and "pip install" in a]
    assert any(re.search(r"pip install (/src|\.)(\s|$)", a) for a in installs), "pip install the project"
    assert not any("[dev" in a or "-e " in a or "pytest" in a for a in installs), "no dev dependencies"

    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(name: str) -> bool:
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            if fnmatch_any(name, pattern.lstrip("!")):
                result = not negate
        return result

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in DEV_ONLY]
    for needed in ["pyproject.toml", pyproject["project"]["readme"], *packages]:
        assert not ignored(needed), f".dockerignore leaves out {needed}, which `pip install .` needs"
    for secret in [".git", ".venv", "jumpsync.toml", "jumpsync.env", ".env", "tests", "var", "jumpsync.db"]:
        assert ignored(secret), f".dockerignore must leave out {secret}"


def fnmatch_any(name: str, pattern: str) -> bool:
    import fnmatch

    pattern = pattern.rstrip("/")
    if pattern.startswith("**/"):
        pattern = pattern[3:]
    return fnmatch.fnmatch(name, pattern)


# --------------------------------------------------------------------------------------------------------
# Grafana
# --------------------------------------------------------------------------------------------------------

def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def test_grafana_dashboard_queries_only_jumpsync_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = list(_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    variables = dashboard.get("templating", {}).get("list", [])
    exprs += [v["definition"] for v in variables if v.get("definition")]
    assert exprs
    used = set()
    for expr in exprs:
        for name in re.findall(r"\bjumpsync_[a-z_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if base != name:
                assert METRICS.get(base) == "histogram", f"{name}: only histograms have _bucket/_sum/_count"
            assert base in METRICS, f"the dashboard queries {name}, which jumpsync does not export"
            used.add(base)
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
    assert used == set(METRICS), f"metrics without a panel: {sorted(set(METRICS) - used)}"
    for p in panels:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", f"{p['title']}: use the datasource variable"
            assert {"h", "w", "x", "y"} <= set(p["gridPos"]), p["title"]
    assert {v["name"] for v in variables} >= {"datasource", "connector"}
    for p in panels:
        for t in p.get("targets", []):
            if "connector" in t["expr"] and "jumpsync_provisioning_oldest" not in t["expr"]:
                assert '$connector' in t["expr"], f"{p['title']}: filter by $connector"


# --------------------------------------------------------------------------------------------------------
# Secrets in command lines, and keys only where a process needs them
# --------------------------------------------------------------------------------------------------------

#: Options that put a secret into a command line, which every user of the host reads (`ps`, /proc/PID/cmdline).
SECRET_OPTIONS = {"--basic-auth", "--requirepass", "--masterauth", "-a", "--pass", "--password", "--user", "-u"}


def every_command_line() -> Iterator[tuple[str, list[str]]]:
    """Every command line of deploy/ (compose commands and healthchecks of every service, Kubernetes commands,
    arguments and probes, systemd Exec lines), with each `sh -c` script split into its words too."""
    lines = [*compose_invocations(COMPOSE), *compose_invocations(COMPOSE_DEMO), *k8s_invocations(),
             *systemd_invocations()]
    for where, argv in lines:
        yield where, argv
        if len(argv) >= 3 and Path(argv[0]).name in ("sh", "bash", "dash") and argv[1] == "-c":
            for line in argv[2].splitlines():
                yield f"{where} (script)", shlex.split(line, comments=True)


def secrets_in_command_lines(lines: Iterator[tuple[str, list[str]]]) -> list[str]:
    problems = []
    for where, argv in lines:
        for arg in argv:
            option = arg.split("=", 1)[0]
            if option in SECRET_OPTIONS:
                problems.append(f"{where}: {option} puts a secret in the command line: pass it by environment")
            if re.search(r"://[^/@:\s]+:[^/@\s]+@|://:[^/@\s]+@", arg):
                problems.append(f"{where}: a URL with a password in the command line")
        if argv[:1] == ["requirepass"] or "requirepass" in argv[1:]:
            if not any(a.startswith("$") for a in argv):
                problems.append(f"{where}: requirepass with a literal value")
    return problems


def test_no_secret_in_a_command_line():
    """Flower's login, Redis's password, URLs with passwords: never in argv, in any deployment; and no
    deployment runs Flower without authentication."""
    assert not secrets_in_command_lines(every_command_line()), "\n".join(secrets_in_command_lines(every_command_line()))
    flowers = [(where, args) for where, args in all_invocations() if args[:1] == ["flower"]]
    assert len(flowers) == 3 and not [where for where, args in flowers if "--no-auth" in args], flowers


def test_the_command_line_check_catches_mistakes():
    for argv in (["jumpsync", "flower", "--basic-auth=admin:pw"], ["redis-server", "--requirepass", "pw"],
                 ["redis-cli", "-a", "pw", "ping"], ["celery", "--broker", "redis://:pw@redis:6379/0"],
                 ["sh", "-c", "redis-cli -u redis://user:pw@redis ping"]):
        assert secrets_in_command_lines(iter([("x", argv)])), argv
    assert secrets_in_command_lines(iter([("x", ["requirepass", "pw"])]))
    assert not secrets_in_command_lines(iter([("x", ["requirepass", "${REDIS_PASSWORD:?}"])]))


def key_variables() -> set[str]:
    """The variables that hold JumpCloud API keys: those the deployments' configs name (api_key_env)."""
    tomls = [p.read_text() for p in DEPLOY.glob("*.toml")] + [_configmap_toml()]
    names = {table.get("api_key_env") for text in tomls for kind in ("connectors", "msp")
             for table in tomllib.loads(text).get(kind, [])}
    return {name for name in names if name}


#: Who may hold what: a secret variable → the roles that may get it (anything else must not).
SECRET_HOLDERS = {"JUMPSYNC_FLOWER_BASIC_AUTH": {"flower"}, "REDIS_PASSWORD": {"redis"}}


def _compose_role(name: str, service: dict) -> str:
    command = service.get("command") or []
    if "jumpsync" not in service.get("image", ""):
        return name  # redis, postgres
    return f"worker:{worker_queue(command)}" if command[:1] == ["worker"] else command[0] if command else name


def misplaced_secrets(holdings: dict[str, set[str]], keys: set[str]) -> list[str]:
    """``holdings``: role → the secret variables it gets. API keys only for workers (and the demo simulator,
    which checks the demo's key); each other secret only for its holders."""
    problems = []
    for role, variables in sorted(holdings.items()):
        for variable in sorted(variables):
            if variable in keys and not (role.startswith("worker:") or role == "simulator"):
                problems.append(f"{role} gets the API key {variable}")
            if role not in SECRET_HOLDERS.get(variable, {role}):
                problems.append(f"{role} gets {variable}, which is for {sorted(SECRET_HOLDERS[variable])} only")
    return problems


def compose_holdings() -> dict[str, set[str]]:
    base, demo = load_yaml(COMPOSE)["services"], load_yaml(COMPOSE_DEMO)["services"]
    holdings: dict[str, set[str]] = {}
    for name in sorted(set(base) | set(demo)):
        service = {**base.get(name, {}), **demo.get(name, {})}
        files = set(base.get(name, {}).get("env_file", [])) | set(demo.get(name, {}).get("env_file", []))
        variables = {k for f in files for k in env_file_values(DEPLOY / f"{f}.example")}
        variables |= set(compose_environment(base.get(name, {}))) | set(compose_environment(demo.get(name, {})))
        holdings.setdefault(_compose_role(name, service), set()).update(variables)
    return holdings


def systemd_holdings() -> dict[str, set[str]]:
    holdings = {}
    for name, unit in systemd_units().items():
        variables = set()
        for line in unit_values(unit, "Service", "EnvironmentFile"):
            file = Path(line.lstrip("-")).name
            if "%i" in file:
                examples = [SYSTEMD / f"{file.replace('%i', queue)}.example" for queue in QUEUES]
            else:
                examples = [p for p in (DEPLOY / f"{file}.example", SYSTEMD / f"{file}.example") if p.exists()]
            assert examples and all(p.exists() for p in examples), f"{name}: {file} has no example"
            variables |= {k for example in examples for k in env_file_values(example)}
        role = name.removeprefix("jumpsync-").removesuffix(".service")
        holdings["worker:%i" if role == "worker@" else role] = variables
    return holdings


def k8s_holdings() -> dict[str, set[str]]:
    secrets = k8s_by_kind("Secret")
    holdings: dict[str, set[str]] = {}
    entry = dockerfile_entrypoint()
    for where, _doc, _spec, container in k8s_containers():
        argv = list(container.get("command") or entry) + list(container.get("args") or [])
        (args,) = jumpsync_invocations(argv, where)
        role = f"worker:{worker_queue(args)}" if args[0] == "worker" else args[0]
        variables = {item["name"] for item in container.get("env", []) if "secretKeyRef" in item.get("valueFrom", {})}
        for source in container.get("envFrom", []):
            variables |= set(secrets[source["secretRef"]["name"]]["stringData"])
        holdings[role] = variables
    return holdings


def test_keys_only_where_a_process_needs_them():
    """The JumpCloud keys reach the workers only (compose env files, systemd EnvironmentFile, Kubernetes Secret
    references); Flower's login only Flower, the broker's password (on its own) only Redis."""
    keys = key_variables()
    assert {"ACME_JUMPCLOUD_KEY", "JUMPSYNC_SIM_API_KEY"} <= keys
    compose, systemd, k8s = compose_holdings(), systemd_holdings(), k8s_holdings()
    problems = misplaced_secrets(compose, keys) + misplaced_secrets(systemd, keys) + misplaced_secrets(k8s, keys)
    assert not problems, "\n".join(problems)
    # ... and they do reach the processes that need them.
    for holdings in (compose, k8s):
        assert "ACME_JUMPCLOUD_KEY" in holdings["worker:sync"] and "ACME_JUMPCLOUD_KEY" in holdings["worker:provisioning"]
    assert "ACME_JUMPCLOUD_KEY" in systemd["worker:%i"]
    assert "JUMPSYNC_FLOWER_BASIC_AUTH" in compose["flower"] and "JUMPSYNC_FLOWER_BASIC_AUTH" in systemd["flower"]
    assert "JUMPSYNC_FLOWER_BASIC_AUTH" in k8s["flower"] and "REDIS_PASSWORD" in compose["redis"]
    # Kubernetes: a pod other than a worker takes Secret keys by name, never a whole Secret.
    for where, _doc, _spec, container in k8s_containers():
        if not any(args[:1] == ["worker"] for args in jumpsync_invocations(
                list(container.get("command") or []) + list(container.get("args") or []), where)):
            assert not container.get("envFrom"), f"{where}: envFrom gives it every key of the Secret"


def test_the_key_placement_check_catches_mistakes():
    keys = {"ACME_JUMPCLOUD_KEY"}
    assert misplaced_secrets({"flower": {"ACME_JUMPCLOUD_KEY"}}, keys)
    assert misplaced_secrets({"beat": {"JUMPSYNC_FLOWER_BASIC_AUTH"}}, keys)
    assert misplaced_secrets({"worker:sync": {"REDIS_PASSWORD"}}, keys)
    assert not misplaced_secrets({"worker:sync": {"ACME_JUMPCLOUD_KEY", "JUMPSYNC_BROKER_URL"}}, keys)


# --------------------------------------------------------------------------------------------------------
# The HTTP API
# --------------------------------------------------------------------------------------------------------

def _api_args(argv: list[str]) -> list[str]:
    (args,) = jumpsync_invocations(argv, "api")
    assert args[0] == "api"
    return args


def _plain_http_allowed(args: list[str]) -> bool:
    """Loopback, TLS of its own, or a TLS proxy said to be in front (what `jumpsync api` itself requires)."""
    host = args[args.index("--host") + 1] if "--host" in args else "127.0.0.1"
    return host in ("127.0.0.1", "::1", "localhost") or "--tls-certfile" in args or "--behind-tls-proxy" in args


def test_the_api_gets_the_database_and_broker_but_no_jumpcloud_key():
    """Compose, systemd and Kubernetes run the API with only the variables it needs, on loopback or behind TLS,
    with a health probe; its Kubernetes Service stays inside the cluster."""
    compose = load_yaml(COMPOSE)["services"]["api"]
    args = _api_args(list(compose.get("entrypoint", dockerfile_entrypoint())) + compose["command"])
    assert _plain_http_allowed(args)
    env = {**{k: v for f in compose["env_file"] for k, v in env_file_values(DEPLOY / f"{f}.example").items()},
           **compose_environment(compose)}
    assert set(env) <= API_ENVIRONMENT, f"compose api: {sorted(set(env) - API_ENVIRONMENT)}"
    assert all(str(port).startswith("127.0.0.1:") for port in compose["ports"]), "publish the API on loopback"
    assert compose["read_only"] is True and "/healthz" in " ".join(compose["healthcheck"]["test"])

    unit = systemd_units()[API_UNIT]
    assert unit_values(unit, "Service", "EnvironmentFile") == ["/etc/jumpsync/jumpsync.env"]
    (exec_start,) = [argv for where, argv in systemd_invocations() if where.startswith(API_UNIT)]
    assert _plain_http_allowed(_api_args(exec_start))
    assert set(env_file_values(DEPLOY / "jumpsync.env.example")) <= API_ENVIRONMENT

    doc, container = _deployments_by_role()["api"]
    assert _plain_http_allowed(_api_args(list(container.get("command") or dockerfile_entrypoint())
                                         + list(container.get("args") or [])))
    assert not container.get("envFrom"), "envFrom would hand the API every key of the Secret"
    assert set(_container_env(container)) <= API_ENVIRONMENT
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz", probe
    labels = doc["spec"]["template"]["metadata"]["labels"]
    services = [s for s in k8s_by_kind("Service").values() if s["spec"]["selector"].items() <= labels.items()]
    assert services and all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)
