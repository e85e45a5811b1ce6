"""kdns on an etcd that requires TLS and client certificates (--etcd-cafile, --etcd-certfile,
--etcd-keyfile): certificates made by the openssl command, one etcd member."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO, Process
from tests.etcd.conftest import EtcdCluster, client


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, signed by it."""
    files = {name: directory / name for name in ("ca.crt", "ca.key", "server.crt", "server.key", "client.crt",
                                                  "client.key")}
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", str(files["ca.key"]), "-out", str(files["ca.crt"]), "-days", "1",
             "-subj", "/CN=kdns test CA")
    # etcd's own gateway dials its gRPC server with the server certificate: clientAuth too.
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"),
                            ("client", "extendedKeyUsage=clientAuth")):
        request, extensions = directory / f"{name}.csr", directory / f"{name}.ext"
        extensions.write_text(extension + "\n")
        _openssl("req", "-new", *ec, "-keyout", str(files[f"{name}.key"]), "-out", str(request), "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", str(request), "-CA", str(files["ca.crt"]), "-CAkey", str(files["ca.key"]),
                 "-CAcreateserial", "-out", str(files[f"{name}.crt"]), "-days", "1", "-extfile", str(extensions))
    return files


def test_kdns_talks_to_etcd_over_tls_with_a_client_certificate(
    etcd_cluster: Callable[..., EtcdCluster], kdns_process: Callable[..., Process], tmp_path: Path
) -> None:
    """With the CA and a client certificate kdns serves and writes; without the client
    certificate etcd refuses it and kdns says it cannot reach the registry."""
    files = certificates(tmp_path)
    context = ssl.create_default_context(cafile=str(files["ca.crt"]))
    context.load_cert_chain(files["client.crt"], files["client.key"])
    cluster = etcd_cluster(
        1, "--cert-file", str(files["server.crt"]), "--key-file", str(files["server.key"]),
        "--trusted-ca-file", str(files["ca.crt"]), "--client-cert-auth", scheme="https", context=context,
    )
    store = f"etcd://127.0.0.1:{cluster.members[0].client_port}"
    replica = kdns_process("--store", store, "--etcd-cafile", str(files["ca.crt"]),
                           "--etcd-certfile", str(files["client.crt"]), "--etcd-keyfile", str(files["client.key"]))
    created = client(replica, tmp_path).request("POST", "/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})
    assert created.status == 201, created.body
    assert "registry on etcd https://127.0.0.1:" in "".join(replica.output)

    refused = subprocess.run(
        [sys.executable, "-m", "kdns", "serve", "--store", store, "--etcd-cafile", str(files["ca.crt"]),
         "--dns-port", "0", "--api-port", "0", "--upstream", "none"],
        check=False, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=REPO,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"kdns: error: cannot open the registry on etcd (https{store[4:]}): etcd is unreachable (https"), refused.stderr
