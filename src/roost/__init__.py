"""Roost: a certificate-secured document database that speaks RavenDB's HTTP API."""

__version__ = "0.1.0"
# RavenDB clients compare the server version as a string against "4.1"; a 7.x value reads as modern.
RAVEN_SERVER_VERSION = "7.2.0"
