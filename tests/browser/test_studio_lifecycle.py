"""Issues 17 and 18 in the Studio: connection snippets after Generate, a certificate request signed from the
generate dialog (the key never reaches the server), and the operators' alerts of what will expire."""

from __future__ import annotations

import base64
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.sync_api import expect
from studio_browser import LAPTOP, Studio, checked_fixture, row, studio_fixture  # noqa: F401

from certtools import issue, roost_ca

pytestmark = pytest.mark.browser


def _count(studio: Studio) -> int:
    listed = studio.server.admin().get(f"{studio.url}/admin/certificates", params={"metadataOnly": "true"})
    return int(listed.json()["TotalResults"])


def test_generate_shows_connection_snippets_that_work_as_pasted(checked: Studio, tmp_path: Path) -> None:
    created = checked.server.admin().put(f"{checked.url}/admin/databases", json={"DatabaseName": "snippets"})
    assert created.status_code in (200, 201), created.text
    page = checked.open(viewport=LAPTOP)
    page.get_by_role("button", name="Generate client certificate").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name", exact=True).fill("snippet-user")
    dialog.get_by_label("Security clearance").select_option("Operator")
    with page.expect_download() as package:
        dialog.get_by_role("button", name="Generate", exact=True).click()
    snippets = dialog.get_by_role("region", name="Connect with this certificate")
    expect(snippets).to_contain_text(f"curl --cert snippet-user.crt --key snippet-user.key --cacert roost-ca.crt "
                                     f"{checked.url}/certificates/whoami")
    expect(snippets).to_contain_text(f'DocumentStore(urls=["{checked.url}"]')
    expect(snippets).to_contain_text(f'new DocumentStore("{checked.url}"')
    expect(snippets).to_contain_text('new X509Certificate2("snippet-user.pfx"')
    expect(snippets.get_by_role("button", name="Copy the curl snippet")).to_be_visible()
    ca = snippets.get_by_role("link", name="download roost-ca.crt")
    with page.expect_download() as download:
        ca.click()
    assert download.value.suggested_filename == "roost-ca.crt"
    checked.shot(page, "studio-generate-snippets")
    # Pasted as shown (the package unzipped beside them): curl and the Python client connect.
    download.value.save_as(str(tmp_path / "roost-ca.crt"))
    package.value.save_as(str(tmp_path / "snippet-user.zip"))
    with zipfile.ZipFile(tmp_path / "snippet-user.zip") as archive:
        archive.extractall(tmp_path)
    blocks = [block.inner_text() for block in snippets.locator("pre").all()]
    curl = subprocess.run(blocks[0], shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert curl.returncode == 0 and '"Name":"snippet-user"' in curl.stdout.replace(" ", ""), curl.stderr
    python = blocks[1].replace("# cat", "cat", 1).split("\n", 1)
    subprocess.run(python[0], shell=True, cwd=tmp_path, check=True)
    program = python[1].replace("YourDatabase", "snippets") + "\nprint(store.maintenance.server.send(GetDatabaseNamesOperation(0, 10)))"
    program = "from ravendb.serverwide.operations.common import GetDatabaseNamesOperation\n" + program
    ran = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and "snippets" in ran.stdout, ran.stdout + ran.stderr


def _request_file(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])).sign(key, hashes.SHA256()))
    path = directory / f"{name}.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path, key


def test_a_certificate_request_is_signed_from_the_generate_dialog(checked: Studio, tmp_path: Path) -> None:
    request_path, key = _request_file(tmp_path, "from-the-studio")
    page = checked.open(viewport=LAPTOP)
    page.get_by_role("button", name="Generate client certificate").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name", exact=True).fill("from-the-studio")
    dialog.get_by_label("I have a certificate request").check()
    expect(dialog.get_by_label("Passphrase (optional)")).to_be_hidden()  # no key here: nothing to protect
    dialog.get_by_label("Certificate request (.csr)").set_input_files(str(request_path))
    checked.shot(page, "studio-generate-csr")
    with page.expect_download() as download_info:
        dialog.get_by_role("button", name="Sign request").click()
    download = download_info.value
    assert download.suggested_filename == "from-the-studio.crt"
    expect(dialog.get_by_role("status")).to_contain_text("was signed")
    expect(dialog.get_by_role("region", name="Connect with this certificate")).not_to_contain_text(".pfx")
    crt = tmp_path / "from-the-studio.crt"
    download.save_as(str(crt))
    certificate = x509.load_pem_x509_certificate(crt.read_bytes())
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()
    pem = tmp_path / "from-the-studio.pem"
    pem.write_bytes(crt.read_bytes() + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    session = requests.Session()
    session.verify, session.cert = str(checked.server.ca_pem), str(pem)
    assert session.get(f"{checked.url}/certificates/whoami").json()["Name"] == "from-the-studio"
    dialog.get_by_role("button", name="Close", exact=True).click()
    expect(row(page, "from-the-studio")).to_be_visible()


def test_a_file_that_is_no_certificate_request_is_refused_and_registers_nothing(checked: Studio,
                                                                                tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.csr"
    garbage.write_text("-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgcmVxdWVzdA==\n-----END CERTIFICATE REQUEST-----\n")
    before = _count(checked)
    page = checked.open(viewport=LAPTOP)
    page.get_by_role("button", name="Generate client certificate").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name", exact=True).fill("not-signed")
    dialog.get_by_label("I have a certificate request").check()
    dialog.get_by_role("button", name="Sign request").click()
    expect(dialog.get_by_role("alert")).to_contain_text("Choose the certificate request")
    dialog.get_by_label("Certificate request (.csr)").set_input_files(str(garbage))
    dialog.get_by_role("button", name="Sign request").click()
    expect(dialog.get_by_role("alert")).to_contain_text("is not a PKCS#10 certificate request")
    expect(page.get_by_role("dialog")).to_be_visible()
    assert _count(checked) == before


def test_operators_see_what_will_expire_and_users_do_not(checked: Studio) -> None:
    soon = issue(roost_ca(checked.server.certs_dir), "expires-in-the-studio", days=5)
    upload = checked.server.admin().put(f"{checked.url}/admin/certificates", json={
        "Name": "expires-in-the-studio", "SecurityClearance": "ValidUser", "Permissions": {},
        "Certificate": base64.b64encode(soon.certificate.public_bytes(serialization.Encoding.DER)).decode()})
    assert upload.status_code == 201, upload.text
    page = checked.open(viewport=LAPTOP)
    alerts = page.get_by_role("region", name="Certificates expiring soon")
    expect(alerts).to_be_visible()
    expect(alerts).to_contain_text("expires-in-the-studio")
    expect(alerts).to_contain_text("within 30 days")
    checked.shot(page, "studio-expiry-alerts")
    reader = checked.generate("alerts-reader", permissions={"alerts-db": "Read"})
    user_page = checked.open(reader.pem_path, route="databases", viewport=LAPTOP)
    expect(user_page.locator("#alerts")).to_be_hidden()
