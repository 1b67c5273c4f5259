"""``roost auth 2fa`` and ``roost auth logout``: two-factor sessions for API users; and the enrolment helpers
``roost certs generate --require-2fa`` uses to show a new key and its QR code (docs/two-factor.md).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import click

from roost.cli.client import CliError, Endpoint, server_options
from roost.security.twofactor import COOKIE_NAME, issuer_for_host, otpauth_uri, qr_terminal

# Enrolment (used by roost certs generate --require-2fa) -----------------------------------------------------


def new_key(endpoint: Endpoint) -> str:
    """A fresh TOTP key from the server (GET /admin/certificates/2fa/generate): the server's CSPRNG, not ours."""
    secret = endpoint.request("GET", "/admin/certificates/2fa/generate").json()
    if not isinstance(secret, dict) or not isinstance(secret.get("Secret"), str):
        raise CliError("The server did not return a two-factor key.", 1)
    return str(secret["Secret"])


def enrolment_text(secret: str, name: str, url: str) -> str:
    """The key, grouped for typing, and a terminal QR code of its otpauth:// URI. Shown once: Roost never
    returns the key again."""
    uri = otpauth_uri(secret, name, issuer_for_host(urlsplit(url).netloc))
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    return (
        f"Two-factor authentication key for '{name}' (shown once; Roost never shows it again):\n"
        f"  {grouped}\n"
        "Scan this QR code with an authenticator app (or type the key):\n"
        f"{qr_terminal(uri)}"
        f"  {uri}\n"
        "The holder opens a session with the app's code: in the Studio, or `roost auth 2fa --code 123456`."
    )


# roost auth -----------------------------------------------------------------------------------------------------


@click.group()
def auth() -> None:
    """Two-factor sessions for a certificate that requires them."""


@auth.command(name="2fa")
@click.option("--code", required=True, help="The 6-digit code your authenticator app shows now.")
@click.option("--duration", type=click.IntRange(1, None), default=None,
              help="Session length in minutes (default: the server's default; at most its maximum).")
@click.option("--all-clients", is_flag=True,
              help="Open the session for every client of this certificate. Without it, only clients that send "
                   "the printed cookie get in.")
@server_options
def two_factor(endpoint: Endpoint, code: str, duration: int | None, all_clients: bool) -> None:
    """Open a two-factor session for your certificate (--cert) with a code from your authenticator app."""
    token = code.replace(" ", "")
    if not re.fullmatch(r"\d{6}", token):
        raise CliError("--code must be the 6-digit code from your authenticator app.")
    params = {"hasLimits": "false" if all_clients else "true"}
    if duration is not None:
        params["sessionDurationInMin"] = str(duration)
    else:
        config = endpoint.request("GET", "/authentication/2fa/configuration").json()
        duration = int(config["DefaultTwoFactorSessionDurationInMin"])
    response = endpoint.request("POST", "/authentication/2fa", params=params, body={"Token": token},
                                expect=(202,))
    if all_clients:
        click.echo(f"Two-factor session open for {duration} minutes for every client of this certificate.")
        return
    cookie = _cookie_value(response.headers.get("set-cookie", ""))
    click.echo(f"Two-factor session open for {duration} minutes, only for clients that send this header "
               "with the same certificate:")
    click.echo(f"Cookie: {COOKIE_NAME}={cookie}")


@auth.command()
@server_options
def logout(endpoint: Endpoint) -> None:
    """End your certificate's two-factor session, for every client that uses it."""
    endpoint.request("DELETE", "/authentication/2fa", expect=(204,))
    click.echo("Two-factor session ended for every client of this certificate.")


def _cookie_value(set_cookie: str) -> str:
    first = set_cookie.split(";", 1)[0]
    name, _, value = first.partition("=")
    if name.strip() != COOKIE_NAME or not value:
        raise CliError("The server opened a session but sent no 2fa-cookie.", 1)
    return value.strip()
