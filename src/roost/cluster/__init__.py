"""Scaling out on one machine: worker processes sharing one listening socket (``roost serve --workers N``), and
how each follows what the others change in a shared embedded store. Nodes on PostgreSQL follow each other through
the storage's notifications instead (``roost.storage.postgres``); docs/cluster.md has both."""
