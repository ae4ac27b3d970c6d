"""contrib/haproxy.cfg is a valid HAProxy configuration, warning-free, as shipped and as the test
bed rewrites it (HAProxy's own checker, `haproxy -c`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import haproxy
import pytest
import trustme

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="haproxy is not installed (apt-get install haproxy)")


@pytest.fixture(scope="module")
def site_pem(tmp_path_factory) -> Path:
    leaf = trustme.CA().issue_cert("askr.example")
    pem = tmp_path_factory.mktemp("tls") / "site.pem"
    pem.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems) + leaf.private_key_pem.bytes())
    return pem


def check(config: str, tmp_path: Path) -> str:
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    done = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30,
                          check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "WARNING" not in output and "ALERT" not in output, output
    return output


def test_the_shipped_config_is_valid_once_it_has_a_certificate(site_pem, tmp_path):
    shipped = haproxy.TEMPLATE.read_text()
    assert "crt /etc/haproxy/certs/site.pem" in shipped
    check(shipped.replace("/etc/haproxy/certs/site.pem", str(site_pem)), tmp_path)


@pytest.mark.parametrize("log", [True, False], ids=["logged", "quiet"])
def test_the_test_bed_config_is_valid(site_pem, tmp_path, log):
    servers = [(f"h{i}", f"10.231.0.{10 + i}:8080") for i in (1, 2, 3)]
    config = haproxy.config_from_template(servers, site_pem, tmp_path / "admin.sock", log=log)
    check(config, tmp_path)
    live = [line for line in config.splitlines() if not line.lstrip().startswith("#")]
    assert "    server h3 10.231.0.13:8080" in live
    assert not [line for line in live if "10.0.0." in line]


def test_a_template_that_changed_shape_is_reported_not_silently_tested(site_pem, tmp_path):
    with pytest.raises(haproxy.ConfigTemplateError, match="server lines"):
        haproxy.config_from_template([("only", "10.231.0.11:8080")], site_pem, tmp_path / "admin.sock")
