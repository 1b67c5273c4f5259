"""Databases of JSON documents: RavenDB's model, enough for its clients."""
