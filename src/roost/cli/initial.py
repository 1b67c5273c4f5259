"""``roost certs initial``: export the initial client certificate package (added to the ``certs`` group)."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from roost.cli.client import EXIT_REFUSED, CliError


@click.command("initial")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("roost-data"),
              show_default=True, help="The server's data directory (run this on the server machine).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Where to write the .zip.")
def initial(data_dir: Path, out: Path) -> None:
    """Export the initial client certificate package (.pfx, .crt, .key, README.txt) made on first start.

    This is the only way to get it back: the server keeps it only in its data directory, and no API returns a
    private key. Its clearance is InitialClientCertificate.Clearance (ClusterAdmin, or Operator when hosted).
    """
    from roost.pki.datadir import INITIAL_CLIENT_NAME

    package = data_dir / "certificates" / f"{INITIAL_CLIENT_NAME}.zip"
    if not package.is_file():
        raise CliError(f"No initial client certificate in {data_dir}: start the server once with this data "
                       "directory (roost serve --data-dir ...), which creates it.", EXIT_REFUSED)
    if out.exists():
        raise CliError(f"{out} already exists; choose another --out.", EXIT_REFUSED)
    shutil.copyfile(package, out)
    out.chmod(0o600)  # it holds a private key
    click.echo(f"Wrote {out}. It holds a private key: keep it as safe as a password. See README.txt inside.")
