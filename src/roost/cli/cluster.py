"""``roost cluster ...``: the nodes of a cluster (docs/cluster.md)."""

from __future__ import annotations

import click

from roost.cli.client import Endpoint, server_options


@click.group()
def cluster() -> None:
    """The nodes of a cluster sharing one PostgreSQL database."""


@cluster.command("topology")
@server_options
def topology(endpoint: Endpoint) -> None:
    """List the live nodes (tag, URL) as the server answering reports them. Needs any valid certificate."""
    result = endpoint.json("GET", "/cluster/topology")
    members = result["Topology"]["Members"]
    everyone = result["Topology"]["AllNodes"]
    click.echo(f"This node: {result['NodeTag']}")
    for tag, url in everyone.items():
        state = "live" if tag in members else "not seen lately"
        click.echo(f"  {tag}  {url}  ({state})")


@cluster.command("remove-node")
@click.argument("tag")
@server_options
def remove_node(endpoint: Endpoint, tag: str) -> None:
    """Remove node TAG from the cluster and revoke its server certificate on every node. Needs ClusterAdmin.

    \b
      roost cluster remove-node B

    Ask any other node: a node cannot remove itself. Stop the removed node's process too.
    """
    result = endpoint.json("DELETE", "/admin/cluster/node", params={"nodeTag": tag}, expect=(200,))
    click.echo(f"Removed node {result['Tag']} ({result['Url']}).")
    if result["RevokedThumbprint"]:
        click.echo(f"Revoked its server certificate {result['RevokedThumbprint']}: no node accepts it any more.")
    elif result["Thumbprint"]:
        click.echo(f"Its server certificate {result['Thumbprint']} is still presented by other nodes, so it stays "
                   "trusted.")


@cluster.command("replacement")
@click.option("--reset", is_flag=True, help="Abandon it: nodes that swapped keep the new certificate.")
@server_options
def replacement(endpoint: Endpoint, reset: bool) -> None:
    """Show each node's progress in the server-certificate replacement under way. Needs ClusterAdmin.

    \b
      roost cluster replacement
      roost cluster replacement --reset
    """
    if reset:
        endpoint.request("POST", "/admin/certificates/replacement/reset", expect=(204,))
        click.echo("The replacement was abandoned.")
        return
    response = endpoint.request("GET", "/admin/certificates/replacement/status", expect=(200, 404))
    if response.status == 404:
        click.echo("No server-certificate replacement is under way.")
        return
    status = response.json()
    when = "each node as it confirms" if status["ReplaceImmediately"] else "once every node has confirmed"
    click.echo(f"Replacing {status['OldThumbprint']} by {status['Thumbprint']} ({when}): "
               f"{status['Confirmations']} confirmed, {status['Replaced']} replaced.")
    for node in status["Nodes"]:
        state = "replaced" if node["Replaced"] else "confirmed" if node["Confirmed"] else "waiting"
        click.echo(f"  {node['Tag']}  {state}" + (f"  ({node['Error']})" if node.get("Error") else ""))
