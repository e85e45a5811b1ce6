"""`--store` and the etcd flags: what they accept, and the exact error for what they refuse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kdns.cli import _parser, settings_from
from kdns.config import ConfigError, Settings
from tests.conftest import REPO


def settings(*flags: str, **environ: str) -> Settings:
    return settings_from(_parser().parse_args(["serve", "--upstream", "none", *flags]), environ)[0]


def test_no_store_flag_keeps_the_embedded_store() -> None:
    assert settings().etcd_endpoints == ()
    assert settings("--store", "sqlite").etcd_endpoints == ()


def test_store_names_every_member_and_the_environment_twin_works() -> None:
    got = settings("--store", "etcd://127.0.0.1:2379,etcd-1.example:2379,[FD00::0:1]:2379")
    assert got.etcd_endpoints == ("http://127.0.0.1:2379", "http://etcd-1.example:2379", "http://[FD00::0:1]:2379")
    assert (got.etcd_prefix, got.leader_elect_lease_duration) == ("/kdns", 15.0)
    from_env = settings(KDNS_STORE="etcd://10.0.0.5:2379", KDNS_ETCD_PREFIX="/dns", KDNS_LEADER_ELECT_LEASE_DURATION="5")
    assert (from_env.etcd_endpoints, from_env.etcd_prefix, from_env.leader_elect_lease_duration) == (
        ("http://10.0.0.5:2379",), "/dns", 5.0)


def test_a_ca_or_client_certificate_means_https(tmp_path: Path) -> None:
    got = settings("--store", "etcd://h:2379", "--etcd-cafile", str(tmp_path / "ca.pem"))
    assert got.etcd_endpoints == ("https://h:2379",)
    assert got.etcd_cafile == tmp_path / "ca.pem"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--store", "etcd3://h:2379"), "--store: store 'etcd3://h:2379': expected sqlite or etcd://HOST:PORT[,HOST:PORT...]"),
        (("--store", "etcd://h"), "--store: store 'etcd://h': member 'h' is not HOST:PORT"),
        (("--store", "etcd://h:2379,:2380"), "--store: store 'etcd://h:2379,:2380': member ':2380' is not HOST:PORT"),
        (("--store", "etcd://h:99999"), "--store: store 'etcd://h:99999': member 'h:99999' is not HOST:PORT"),
        (("--store", "etcd://fd00::1"), "--store: store 'etcd://fd00::1': member 'fd00::1' is not HOST:PORT"),
        (("--store", "etcd://[fd00::1"), "--store: store 'etcd://[fd00::1': member '[fd00::1' is not HOST:PORT"),
        (("--etcd-prefix", "kdns"), "--etcd-prefix 'kdns': must be an absolute key path such as /kdns"),
        (("--etcd-prefix", "/"), "--etcd-prefix '/': must be an absolute key path such as /kdns"),
        (("--etcd-certfile", "c.pem"), "--etcd-certfile and --etcd-keyfile go together"),
        (("--leader-elect-lease-duration", "soon"), "--leader-elect-lease-duration 'soon': not a number"),
        (("--leader-elect-lease-duration", "0.5"),
         "--leader-elect-lease-duration '0.5': must be between 1 and 3600 seconds"),
    ],
)
def test_bad_etcd_flags_are_refused_with_the_reason(flags: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(*flags)
    assert str(info.value) == message


def test_data_dir_with_the_etcd_store_is_refused(tmp_path: Path) -> None:
    """The registry on etcd keeps no journal: an explicit --data-dir is an error, not ignored."""
    with pytest.raises(ConfigError) as info:
        settings("--store", "etcd://h:2379", "--data-dir", str(tmp_path))
    assert str(info.value) == (
        "--data-dir: the registry lives in etcd with --store etcd://...; no data directory is used"
    )


def test_kdns_serve_says_why_it_cannot_reach_etcd() -> None:
    """No member answers: the start fails with exit 1 and the members it tried."""
    result = subprocess.run(
        [sys.executable, "-m", "kdns", "serve", "--store", "etcd://127.0.0.1:1", "--dns-port", "0", "--api-port", "0",
         "--upstream", "none"],
        check=False, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, cwd=REPO,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "kdns: error: cannot open the registry on etcd (http://127.0.0.1:1): etcd is unreachable (http://127.0.0.1:1: "
    ), result.stderr
