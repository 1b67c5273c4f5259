"""One module per area; each exposes ``routes``, a RouteTable."""
