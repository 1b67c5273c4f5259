"""/metrics against a real server: scraped over TLS by an Operator and parsed with prometheus_client's own
parser; a User is refused."""

from __future__ import annotations

import time

import pyotp
from prometheus_client.parser import text_string_to_metric_families

from conftest import RunningServer


def _scrape(server: RunningServer) -> dict[str, list[tuple[dict[str, str], float]]]:
    operator = server.generate("metrics-operator", "Operator")
    response = server.session(operator.pem_path).get(f"{server.url}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {family.name: [(sample.labels, sample.value) for sample in family.samples]
            for family in text_string_to_metric_families(response.text)}


def test_an_operator_scrapes_expiry_registry_size_refusals_and_requests(server: RunningServer) -> None:
    user = server.generate("metrics-user", "ValidUser", {"metrics-db": "Read"}, ExpirationMonths=1)
    # A refusal of each kind the counters should see: a lower clearance, then no certificate at all.
    assert server.session(user.pem_path).get(f"{server.url}/admin/certificates").status_code == 403
    assert server.session().get(f"{server.url}/certificates/whoami").status_code in (401, 403)
    families = _scrape(server)
    expiry = {labels["name"]: (labels, value)
              for labels, value in families["roost_certificate_expiration_timestamp_seconds"]}
    labels, value = expiry["metrics-user"]
    assert labels == {"name": "metrics-user", "thumbprint": user.thumbprint, "clearance": "ValidUser"}
    listed = server.admin().get(f"{server.url}/admin/certificates", params={"thumbprint": user.thumbprint}).json()
    from roost.clock import parse_wire_date

    assert value == parse_wire_date(listed["Results"][0]["NotAfter"]).timestamp()
    (server_labels, server_expiry), = families["roost_server_certificate_expiration_timestamp_seconds"]
    assert server_expiry > value and len(server_labels["thumbprint"]) == 40
    (_, size), = families["roost_registered_certificates"]
    assert size == len(expiry) >= 3  # admin, the operator, the user
    refusals = {labels["reason"]: count for labels, count in families["roost_authorization_refusals"]
                if "reason" in labels}
    assert refusals.get("InsufficientClearance", 0) >= 1 and refusals.get("NoCertificate", 0) >= 1
    requests = {(labels["level"], labels["status"]): count for labels, count in families["roost_http_requests"]
                if "level" in labels}
    assert requests[("Operator", "403")] >= 1 and requests[("Operator", "200")] >= 1


def test_a_user_is_refused_the_metrics(server: RunningServer) -> None:
    user = server.generate("metrics-refused")
    response = server.session(user.pem_path).get(f"{server.url}/metrics")
    assert response.status_code == 403
    assert "roost_" not in response.text


def test_two_factor_refusals_are_counted_by_outcome(server: RunningServer) -> None:
    def counts() -> dict[str, float]:
        return {labels["outcome"]: value for labels, value in _scrape(server)["roost_two_factor_refusals"]
                if "outcome" in labels}

    secret = server.admin().get(f"{server.url}/admin/certificates/2fa/generate").json()["Secret"]
    cert = server.generate("metrics-2fa", TwoFactorAuthenticationKey=secret)
    client = server.session(cert.pem_path)
    totp = pyotp.TOTP(secret)
    wrong = next(c for c in ("000000", "111111", "222222")
                 if c not in {totp.at(time.time() + o) for o in (-30, 0, 30, 60)})

    def login(token: str) -> int:
        return client.post(f"{server.url}/authentication/2fa", params={"hasLimits": "false"},
                           json={"Token": token}).status_code

    before = counts()
    right = totp.now()
    assert login(right) == 202
    assert login(right) == 406  # replay
    assert login(wrong) == 406
    after = counts()
    assert after["replay"] - before.get("replay", 0) == 1 and after["wrong"] - before.get("wrong", 0) == 1
    for _ in range(4):
        assert login(wrong) == 406
    assert login(wrong) == 429
    assert counts()["locked"] - before.get("locked", 0) == 1
