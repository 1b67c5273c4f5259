"""Who is calling (identity), may they (authz), and the certificates that say so (registry)."""
