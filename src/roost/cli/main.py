"""``roost``: run the server and manage it from the command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from roost.cli.client import EXIT_USAGE, CliError
from roost.errors import ConfigurationError, RoostError
from roost.settings import load_settings


class RoostGroup(click.Group):
    """The one error hook of the CLI: a ``CliError`` (or a ``RoostError`` raised on this machine, e.g. by reading a
    local certificate file) is printed as one line on stderr and exits with its documented code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except CliError as error:
            click.echo(f"Error: {error.message}", err=True)
            sys.exit(error.exit_code)
        except RoostError as error:
            click.echo(f"Error: {error.message}", err=True)
            sys.exit(EXIT_USAGE)


@click.group(cls=RoostGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="roost")
def main() -> None:
    """Roost: a certificate-secured document database that speaks RavenDB's HTTP API."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where databases and certificates live (default ./roost-data).")
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8443; 0 picks a free one).")
@click.option("--workers", default=None, metavar="N|auto",
              help="Worker processes sharing the listening socket (default 1; auto: one per core). docs/cluster.md.")
@click.pass_context
def serve(ctx: click.Context, data_dir: Path | None, host: str | None, port: int | None,
          workers: str | None) -> None:
    """Start the server over HTTPS. On first start it creates its CA, server and admin client certificates.

    RavenDB's settings are accepted as --Key=Value (e.g. --ServerUrl=https://0.0.0.0:8443,
    --Security.Certificate.Path=server.pfx, --RunInMemory=true).
    """
    from roost.cluster import workers as worker_processes
    from roost.server import loop_factory, run

    try:
        count = worker_processes.parse_workers(workers)
        settings, ignored = load_settings({"data_dir": data_dir, "host": host, "port": port}, list(ctx.args))
        listen_fd = worker_processes.worker_socket_fd()
        if listen_fd is not None:  # a worker started by `roost serve --workers N`
            with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
                runner.run(run(settings, ignored, listen_fd=listen_fd, proxy_fd=worker_processes.worker_proxy_fd(),
                               ready=worker_processes.report_ready, schedules=worker_processes.runs_schedules()))
        elif count > 1:
            args = [*(["--data-dir", str(data_dir)] if data_dir is not None else []),
                    *(["--host", host] if host is not None else []),
                    *(["--port", str(port)] if port is not None else []), *ctx.args]
            worker_processes.serve_workers(settings, ignored, worker_processes.worker_command(args), count,
                                           lambda line: click.echo(line))
        else:
            with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
                runner.run(run(settings, ignored, echo=lambda line: click.echo(line)))
    except ConfigurationError as error:
        raise CliError(error.message, EXIT_USAGE) from error
    except KeyboardInterrupt:
        pass


def _register_certificate_commands() -> None:
    from roost.cli.certs import certs, server_cert

    main.add_command(certs)
    main.add_command(server_cert)
    from roost.cli.twofactor import auth

    main.add_command(auth)


def _register_hosted_commands() -> None:
    from roost.cli.backup import backup
    from roost.cli.certs import certs
    from roost.cli.cluster import cluster
    from roost.cli.initial import initial
    from roost.cli.security import audit, security

    main.add_command(security)
    main.add_command(audit)
    main.add_command(backup)
    main.add_command(cluster)
    certs.add_command(initial)


_register_certificate_commands()
_register_hosted_commands()

if __name__ == "__main__":
    main()
