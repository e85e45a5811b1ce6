"""The follower's kubeconfig: TLS, tokens and client certificates against a real TLS
primary, and every kubeconfig or flag it refuses, with the exact message."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdns.cli import main
from kdns.follow.kubeconfig import KubeconfigError, load
from tests.api.conftest import _self_signed
from tests.conftest import REPO
from tests.follow.conftest import answers

EXAMPLE = REPO / "zones"
TOKEN = "s3cret-token"


def run_kdns(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
    return subprocess.run(
        [sys.executable, "-m", "kdns", "serve", "--dns-port", "0", "--upstream", "none", "--api-port", "0", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, stdin=subprocess.DEVNULL, check=False,
    )


@pytest.fixture
def tls_primary(kdns_process, tmp_path):
    """A primary serving its API over TLS (a self-signed certificate for 127.0.0.1) with a token."""
    directory = tmp_path / "primary-tls"
    directory.mkdir()
    _, cert = _self_signed(directory)
    primary = kdns_process("--tls-cert", str(cert), "--tls-key", str(directory / "tls.key"), "--api-token", TOKEN,
                           manifests=[EXAMPLE])
    return primary, cert


def test_follows_over_tls_with_a_ca_and_a_token(tls_primary, kdns_process, kubeconfig):
    primary, cert = tls_primary
    data = base64.b64encode(cert.read_bytes()).decode()
    path = kubeconfig(primary.api_url, cluster={"certificate-authority-data": data}, user={"token": TOKEN})
    follower = kdns_process("--follow", str(path), manifests=None)
    assert answers(follower, "my-service.default.svc.cluster.local") == ["10.96.1.2"]


def test_a_tls_follower_stops_with_every_connection_closed(tls_primary, kdns_process, kubeconfig):
    """On SIGTERM the follower closes its TLS connections (the watches' in mid-stream
    included) before it cancels the watches, and exits 0 with no watch reported broken.

    Not asserted: a ResourceWarning for an unclosed TCPTransport at the loop's end. uvloop
    can leave the TCP transport beneath a TLS connection open when its shutdown is cut
    short (it also logs "Fatal error on SSL protocol" when the primary's close crosses
    ours); on a loaded machine that still happens in about one stop in four, though the
    client gives the loop a turn after closing its session."""
    primary, cert = tls_primary
    data = base64.b64encode(cert.read_bytes()).decode()
    path = kubeconfig(primary.api_url, cluster={"certificate-authority-data": data}, user={"token": TOKEN})
    follower = kdns_process("--follow", str(path), manifests=None)
    assert answers(follower, "my-service.default.svc.cluster.local") == ["10.96.1.2"]
    assert follower.stop() == 0
    output = "".join(follower.output)
    assert "broke" not in output, output


def test_follows_with_relative_files_a_token_file_and_a_client_certificate(tls_primary, kdns_process, tmp_path):
    """certificate-authority, tokenFile and the client certificate as paths relative to
    the kubeconfig, as client-go reads them (the primary does not ask for the certificate:
    it is offered, and the follower connects)."""
    primary, cert = tls_primary
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "ca.crt").write_bytes(cert.read_bytes())
    (config_dir / "token").write_text(TOKEN + "\n")
    client_dir = config_dir / "client"
    client_dir.mkdir()
    _self_signed(client_dir)
    path = config_dir / "config"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "p", "cluster": {"server": primary.api_url, "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": {"tokenFile": "token", "client-certificate": "client/tls.crt",
                                         "client-key": "client/tls.key"}}],
        "contexts": [{"name": "other", "context": {"cluster": "p"}}, {"name": "mine", "context": {"cluster": "p", "user": "u"}}],
        "current-context": "other",
    }))
    follower = kdns_process("--follow", str(path), "--follow-context", "mine", manifests=None)
    assert answers(follower, "my-service.default.svc.cluster.local") == ["10.96.1.2"]


def test_insecure_skip_tls_verify(tls_primary, kdns_process, kubeconfig):
    primary, _ = tls_primary
    path = kubeconfig(primary.api_url, cluster={"insecure-skip-tls-verify": True}, user={"token": TOKEN})
    follower = kdns_process("--follow", str(path), manifests=None)
    assert answers(follower, "my-service.default.svc.cluster.local") == ["10.96.1.2"]


def test_a_refused_token_or_an_unverified_certificate_stops_start_up(tls_primary, kubeconfig):
    primary, cert = tls_primary
    wrong = kubeconfig(primary.api_url, cluster={"certificate-authority": str(cert)}, user={"token": "wrong"})
    result = run_kdns("--follow", str(wrong))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"kdns: error: the API at {primary.api_url} refuses us: 401 Unauthorized: Unauthorized"
    )
    untrusted = kubeconfig(primary.api_url, user={"token": TOKEN})
    result = run_kdns("--follow", str(untrusted))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"kdns: error: cannot verify the certificate of {primary.api_url}: "
    )
    assert "certificate verify failed" in result.stderr


@pytest.mark.parametrize(
    ("config", "context", "message"),
    [
        ("{}", None, "no current-context; name one with --follow-context"),
        ("[1]", None, "not a kubeconfig (expected a mapping)"),
        ("current-context: x", None, "no context named 'x'"),
        ("current-context: c\ncontexts: [{name: c, context: {cluster: k}}]", None, "no cluster named 'k'"),
        ("contexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: 'ftp://x'}}]", "c",
         "cluster server 'ftp://x' is not an http(s) URL"),
        (("contexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: 'https://x'}}]\n"
         "users: [{name: u, user: {exec: {command: gke-gcloud-auth-plugin}}}]"), "c",
         "user 'u' uses exec, which kdns does not support: use a token, a token file or a client certificate"),
        (("contexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: 'https://x', "
         "proxy-url: 'http://p'}}]"), "c", "proxy-url is not supported"),
        (("contexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: 'https://x', "
         "certificate-authority-data: '%%%'}}]"), "c", "certificate-authority-data: not valid base64"),
        (("contexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: 'https://x', "
         "certificate-authority: missing.crt}}]"), "c", "certificate-authority {dir}/missing.crt: No such file or directory"),
        (("contexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: 'https://x'}}]\n"
         "users: [{name: u, user: {client-certificate-data: 'YQ=='}}]"), "c",
         "client-certificate and client-key go together"),
    ],
)
def test_kubeconfigs_kdns_cannot_use(tmp_path, config, context, message):
    path = tmp_path / "kubeconfig"
    path.write_text(config)
    with pytest.raises(KubeconfigError) as refused:
        load(path, context)
    assert str(refused.value) == f"kubeconfig {path}: " + message.format(dir=tmp_path)


def test_mismatched_client_certificate_and_key(tmp_path):
    one, other = tmp_path / "one", tmp_path / "other"
    one.mkdir()
    other.mkdir()
    _self_signed(one)
    _self_signed(other)
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"client-certificate": str(one / "tls.crt"), "client-key": str(other / "tls.key")}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "current-context": "c",
    }))
    with pytest.raises(KubeconfigError) as refused:
        load(path)
    assert str(refused.value) == f"kubeconfig {path}: client-certificate / client-key: KEY_VALUES_MISMATCH"


def test_a_token_file_that_goes_missing_is_named(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"tokenFile": "gone"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "current-context": "c",
    }))
    access = load(path)
    assert access.token_file == tmp_path / "gone"
    with pytest.raises(KubeconfigError) as refused:
        access.headers()
    assert str(refused.value) == f"tokenFile {tmp_path / 'gone'}: No such file or directory"


@pytest.mark.parametrize(
    ("args", "environ", "message"),
    [
        (("--follow-context", "x"), {}, "--follow-context needs --follow"),
        ((), {"KDNS_FOLLOW_CONTEXT": "x"}, "--follow-context needs --follow"),
        (("--follow", "{kc}", "--manifests", "zones"), {}, ("--manifests: --follow serves the followed cluster's "
         "objects, kept in memory only")),
        ((), {"KDNS_FOLLOW": "{kc}", "KDNS_DATA_DIR": "{tmp}"}, ("KDNS_DATA_DIR: --follow serves the followed "
         "cluster's objects, kept in memory only")),
        (("--follow", "{kc}", "--workers", "2"), {}, "--follow serves from one process: --workers is not supported with it"),
        (("--follow", "{kc}", "--proxy"), {}, "--follow runs no service proxy: --proxy is not supported with it"),
        (("--follow", "{kc}", "--store", "etcd://127.0.0.1:2379"), {}, ("--follow serves the followed cluster's "
         "objects, kept in memory only: --store is not supported with it")),
        (("--follow", "{tmp}/missing"), {}, "kubeconfig {tmp}/missing: No such file or directory"),
        ((), {"KDNS_FOLLOW": "{kc}", "KDNS_FOLLOW_CONTEXT": "other"}, "kubeconfig {kc}: no context named 'other'"),
        (("--event-log-size", "0"), {}, "--event-log-size '0': must be at least 1"),
    ],
)
def test_flags_follow_mode_refuses(tmp_path: Path, capsys, args, environ, message):
    """Exit 2 and one line naming the problem (flags and their KDNS_* twins)."""
    kc = tmp_path / "kubeconfig"
    kc.write_text("current-context: x\n")
    argv = ["serve", "--dns-port", "0", "--api-port", "0", "--upstream", "none", "--ephemeral",
            *(arg.format(kc=kc, tmp=tmp_path) for arg in args)]
    if "KDNS_DATA_DIR" in environ:
        argv.remove("--ephemeral")
    assert main(argv, {k: v.format(kc=kc, tmp=tmp_path) for k, v in environ.items()}) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "kdns: error: " + message.format(tmp=tmp_path, kc=kc)


def test_sigterm_while_waiting_for_the_api_exits_0(kubeconfig, tmp_path):
    """A follower whose API is not there yet retries, and stops at once on SIGTERM."""
    from tests.follow.conftest import free_port

    path = kubeconfig(f"http://127.0.0.1:{free_port()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "kdns", "serve", "--dns-port", "0", "--api-port", "0", "--upstream", "none",
         "--follow", str(path)],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline().startswith("kdns: configuration: manifests=")  # the effective settings
        first = process.stderr.readline()
        assert first.startswith("kdns: following http://127.0.0.1:")
        assert "cannot reach the followed API" in process.stderr.readline()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
