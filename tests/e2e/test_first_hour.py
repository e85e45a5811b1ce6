"""The first hour with kdns, as the real command: manifests as declared state (applied and
pruned at start and on SIGHUP), `./zones` as the default, a configuration file, `kdns
validate` and `kdns reset`. Every mistake is asserted with its exact message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.rcode
import pytest

from tests.api.conftest import needs_kubectl
from tests.conftest import REPO
from tests.e2e.kubeapi import Client

WAIT = 10.0

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.96.5.1
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: 10.96.5.2
  ports: [{name: sql, port: 5432}]
"""

BY_API = """\
apiVersion: v1
kind: Service
metadata: {name: made-by-hand}
spec:
  clusterIP: 10.96.5.3
  ports: [{name: http, port: 80}]
"""


def run(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m kdns ARGS`, with no KDNS_* variable but `env`'s; kdns itself from this tree."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "kdns", *args], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=timeout, check=False)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def address(kdns: Any, name: str) -> str | None:
    reply = kdns.resolve(f"{name}.default.svc.cluster.local.", "A")
    if reply.rcode() == dns.rcode.NXDOMAIN:
        return None
    return reply.answer[0][0].address if reply.answer else None


# --- manifests as declared state ------------------------------------------------------------


@needs_kubectl
def test_a_service_removed_from_its_file_is_pruned_on_sighup(kdns_process: Any, tmp_path: Path) -> None:
    """Remove a Service from its manifest file and send SIGHUP: it is gone from DNS. The one
    made with kubectl stays, and so does the one still declared."""
    manifests = tmp_path / "cluster"
    manifests.mkdir()
    (manifests / "services.yaml").write_text(SERVICES)
    kdns = kdns_process("--manifests", str(manifests), manifests=None)
    client = Client(kdns.api_url, tmp_path / "home")
    client.kubectl("apply", "-f", "-", input=BY_API)
    assert [address(kdns, name) for name in ("web", "db", "made-by-hand")] == ["10.96.5.1", "10.96.5.2", "10.96.5.3"]
    source = client.kubectl("get", "service", "db", "-o", "jsonpath={.metadata.annotations}").stdout
    assert f'"kdns.dev/manifest-source":"{manifests / "services.yaml"}"' in source
    assert "kdns.dev/manifest-source" not in client.kubectl("get", "service", "made-by-hand", "-o", "json").stdout

    (manifests / "services.yaml").write_text(SERVICES.split("---\n")[0])
    kdns.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: address(kdns, "db") is None, "db to be pruned")
    assert [address(kdns, name) for name in ("web", "made-by-hand")] == ["10.96.5.1", "10.96.5.3"]
    wait_for(lambda: any("manifests reloaded" in line for line in kdns.output), "the reload's log line")
    line = next(line for line in kdns.output if "manifests reloaded" in line)
    assert line == (f"kdns: manifests reloaded: 1 documents from 1 files in {manifests}; "
                    "pruned 1 no longer declared: Service default/db\n")


def test_a_bad_manifest_on_sighup_changes_nothing(kdns_process: Any, tmp_path: Path) -> None:
    """A reload whose manifests are refused logs the error and keeps the registry as it was."""
    path = tmp_path / "services.yaml"
    path.write_text(SERVICES)
    kdns = kdns_process("--manifests", str(path), manifests=None)
    path.write_text(SERVICES.split("---\n")[0].replace("name: http", "nme: http"))
    kdns.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any("reload: " in line and "unchanged" in line for line in kdns.output), "the reload")
    assert [address(kdns, name) for name in ("web", "db")] == ["10.96.5.1", "10.96.5.2"]
    error = next(line for line in kdns.output if "unchanged" in line)
    assert error == (f'kdns: error: reload: {path}: document 1: Service "web": strict decoding error: '
                     'unknown field "spec.ports[0].nme"; the registry is unchanged\n')


def test_objects_no_longer_declared_are_pruned_at_start(kdns_process: Any, tmp_path: Path) -> None:
    """With a saved registry, a restart with a Service removed from the files prunes it."""
    path = tmp_path / "services.yaml"
    path.write_text(SERVICES)
    data = tmp_path / "data"
    first = kdns_process("--manifests", str(path), "--data-dir", str(data), manifests=None)
    assert address(first, "db") == "10.96.5.2"
    assert first.stop() == 0
    path.write_text(SERVICES.split("---\n")[0])
    second = kdns_process("--manifests", str(path), "--data-dir", str(data), manifests=None)
    assert (address(second, "web"), address(second, "db")) == ("10.96.5.1", None)
    assert any("pruned 1 no longer declared: Service default/db" in line for line in second.output)


def test_reset_says_what_it_deletes_and_then_starts_empty(kdns_process: Any, tmp_path: Path) -> None:
    """`kdns reset` names the file and what it holds, deletes it, and refuses while kdns runs."""
    data = tmp_path / "data"
    kdns = kdns_process("--data-dir", str(data), manifests=[SERVICES])
    busy = run("reset", "--data-dir", str(data))
    assert busy.returncode == 1
    assert busy.stderr == (f"kdns: error: {data / 'registry.sqlite3'} is in use by another kdns: give each its "
                           "own --data-dir, or use --ephemeral\n")
    assert kdns.stop() == 0
    done = run("reset", env={"KDNS_DATA_DIR": str(data)})
    assert done.returncode == 0, done.stderr
    version = done.stderr.split("resource version ")[1].split(")")[0]
    assert done.stderr == (
        f"kdns reset: deleting the registry saved in {data / 'registry.sqlite3'}: 2 Namespace, 2 Service "
        f"(resource version {version})\n"
        "kdns reset: deleted: the next `kdns serve` starts from its manifests alone\n"
    )
    assert not (data / "registry.sqlite3").exists()
    again = run("reset", "--data-dir", str(data))
    assert (again.returncode, again.stderr) == (0, f"kdns reset: no registry in {data}: nothing to delete\n")


# --- ./zones, the configuration file and the start-up log ---------------------------------------


def test_zones_in_the_working_directory_are_the_default(kdns_process: Any, tmp_path: Path) -> None:
    """Run beside a `zones/` directory, kdns serves its manifests and zone files (not the
    example installed with it), and its log says so, with counts."""
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "services.yaml").write_text(SERVICES)
    (zones / "corp.test.zone").write_text("$ORIGIN corp.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 7200 1800 86400 5\n"
                                          "@ IN NS ns\nns IN A 192.0.2.1\nwww IN A 192.0.2.2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
    env["PYTHONPATH"] = str(REPO)
    argv = [sys.executable, "-m", "kdns", "serve", "--dns-port", "0", "--api-port", "0", "--ephemeral",
            "--upstream", "none", "--log-level", "info"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "configuration: " in line or len(lines) > 50:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
    assert "kdns: manifests applied: 2 documents from 1 files in zones\n" in lines, lines
    assert "kdns: static zones from zones: 1 zone: corp.test. (serial 1)\n" in lines, lines
    configuration = next(line for line in lines if line.startswith("kdns: configuration: "))
    assert " manifests=zones " in configuration and " zones-dir=zones " in configuration


def test_a_configuration_file_sets_every_flag_and_flags_and_variables_win(kdns_process: Any, tmp_path: Path) -> None:
    """A TOML file sets the flags by their names; KDNS_* beats it and a flag beats both; the
    log shows the effective configuration with each value's source, the token masked."""
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "services.yaml").write_text(SERVICES)
    config = tmp_path / "kdns.toml"
    config.write_text('manifests = ["cluster"]\nttl = 30\npods = "disabled"\napi-token = "s3cret"\n'
                      'zones-dir = "none"\ncache-size = 7\n')
    kdns = kdns_process("--config", str(config), "--ttl", "12", manifests=None, env={"KDNS_CACHE_SIZE": "9"})
    reply = kdns.resolve("web.default.svc.cluster.local.", "A")
    assert reply.answer[0].ttl == 12
    # kdns logs its configuration once it serves, just after its API line (what the fixture
    # waits for): on a loaded machine the line may come a moment after the first answer.
    deadline = time.monotonic() + 10
    while not (lines := [line for line in kdns.output if line.startswith("kdns: configuration: ")]):
        assert time.monotonic() < deadline, "no configuration line:\n" + "".join(kdns.output)
        time.sleep(0.02)
    line = lines[0]
    assert f"manifests={tmp_path / 'cluster'} ({config}:1: manifests)" in line
    assert "ttl=12 (--ttl)" in line and f"pods=disabled ({config}:3: pods)" in line
    assert "cache-size=9 (KDNS_CACHE_SIZE)" in line and "zones-dir=none" in line
    assert f"api-token=**** ({config}:4: api-token)" in line and "s3cret" not in "".join(kdns.output)


@pytest.mark.parametrize(
    ("text", "suffix", "env", "message"),
    [
        ("ttl = 30\ncache-size = -1\n", ".toml", {}, "{config}:2: cache-size '-1': must not be negative"),
        ("ttl = 30\ndns-prot = 53\n", ".toml", {}, "{config}:2: unknown key 'dns-prot' (did you mean dns-port?)"),
        ("ttl: 30\nworkers: 1000\n", ".yaml", {}, "{config}:2: workers '1000': must be between 1 and 64"),
        ("zone: cluster.local\nttl: [1, 2]\n", ".yaml", {}, "{config}:2: ttl: expected a single value, not list"),
        ("ttl = 30\n", ".toml", {"KDNS_TTL": "9999"}, "KDNS_TTL '9999': must be between 0 and 3600"),
        ("ttl = 30\n", ".ini", {}, "--config {config}: expected a .toml, .yaml or .yml file"),
        ("ttl = \n", ".toml", {}, "{config}: Invalid value (at line 1, column 7)"),
    ],
    ids=["toml-range", "unknown-key", "yaml-range", "yaml-type", "variable-over-file", "suffix", "toml-syntax"],
)
def test_bad_configuration_values_name_file_and_line(
    tmp_path: Path, text: str, suffix: str, env: dict[str, str], message: str
) -> None:
    """A bad value names where it was set: the file and line, or the variable; exit 2."""
    config = tmp_path / f"kdns{suffix}"
    config.write_text(text)
    result = run("serve", "--config", str(config), "--ephemeral", env=env)
    assert result.returncode == 2
    assert result.stderr == f"kdns: error: {message.format(config=config)}\n"


def test_a_missing_configuration_file_is_named() -> None:
    result = run("serve", env={"KDNS_CONFIG": "/nonexistent/kdns.toml"})
    assert result.returncode == 2
    assert result.stderr == "kdns: error: --config /nonexistent/kdns.toml: cannot read: No such file or directory\n"


# --- kdns validate ----------------------------------------------------------------------------


def test_validate_passes_the_example_cluster() -> None:
    """The README's `kdns validate` on the repository's zones/: manifests and zone files."""
    result = run("validate")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1].startswith("kdns validate: OK: ")
    assert result.stderr.splitlines()[-1].endswith(" manifest files, 1 zones; configuration valid")


def test_validate_lists_every_error_at_once(tmp_path: Path) -> None:
    """Every problem of every file is listed (file, document, field path), and the exit is 1."""
    (tmp_path / "a.yaml").write_text(SERVICES.replace("ports:", "selectr: {app: web}\n  ports:", 1))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: cache, namespace: shop}\nspec:\n  ports: [{port: 70000, targetPort: 80}]\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
        "spec:\n  ports: [{port: 80}]\n  ports: [{port: 81}]\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "bad.test.zone").write_text("$ORIGIN bad.test.\nwww IN A not-an-address\n")
    result = run("validate", str(tmp_path), env={"KDNS_TTL": "-1"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"kdns: warning: {tmp_path / 'empty.yaml'}: no documents (the file is empty)",
        "kdns: error: KDNS_TTL '-1': must be between 0 and 3600",
        (f'kdns: error: {tmp_path / "a.yaml"}: document 1: Service "web": strict decoding error: '
         'unknown field "spec.selectr"'),
        f'kdns: error: {tmp_path / "sub" / "b.yaml"}: document 3: line 16: strict decoding error: duplicate field "ports"',
        (f'kdns: error: {tmp_path / "sub" / "b.yaml"}: document 2: Service "cache" is invalid: spec.ports[0].port: '
         "Invalid value: 70000: must be between 1 and 65535, inclusive"),
        f"kdns: error: {tmp_path / 'bad.test.zone'}:2: Text input is malformed.",
        "kdns validate: 5 problems: 2 objects in 3 manifest files, 0 zones; configuration invalid",
    ]


def test_validate_checks_objects_as_the_registry_does(tmp_path: Path) -> None:
    """Objects declared twice, across files, and two Services asking for one cluster IP."""
    (tmp_path / "a.yaml").write_text(SERVICES)
    (tmp_path / "b.yaml").write_text(SERVICES.split("---\n")[1] + "---\n" + BY_API.replace("10.96.5.3", "10.96.5.1"))
    result = run("validate", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        (f'kdns: error: {tmp_path / "b.yaml"}: document 1: Service "default/db" is declared twice: '
         f"first in {tmp_path / 'a.yaml'}: document 2"),
        (f'kdns: error: {tmp_path / "b.yaml"}: document 2: Service "made-by-hand" is invalid: spec.clusterIPs[0]: '
         'Invalid value: []string{"10.96.5.1"}: failed to allocate IP 10.96.5.1: provided IP is already allocated'),
        "kdns validate: 2 problems: 2 objects in 2 manifest files, 0 zones; configuration valid",
    ]


def test_every_option_has_a_variable_a_file_key_and_a_reader(tmp_path: Path) -> None:
    """Declared once, each `serve` option has its KDNS_* variable and its configuration key
    (the flag without dashes), and is read into Settings by its `parse` or by `configure`."""
    from kdns.cli import SERVE_OPTIONS
    from kdns.config import read_config_file

    read_in_configure = {"data_dir", "ephemeral", "upstream", "store", "log_level"}
    assert [o.name for o in SERVE_OPTIONS if o.parse is None] == [
        o.name for o in SERVE_OPTIONS if o.name in read_in_configure
    ]
    config = tmp_path / "all.yaml"
    config.write_text("".join(f"{option.key}: x\n" for option in SERVE_OPTIONS))
    given = read_config_file(config, SERVE_OPTIONS)
    assert [(name, g.source) for name, g in given.items()] == [
        (option.name, f"{config}:{line}: {option.key}") for line, option in enumerate(SERVE_OPTIONS, 1)
    ]
    assert all(option.env == "KDNS_" + option.key.upper().replace("-", "_") for option in SERVE_OPTIONS)
