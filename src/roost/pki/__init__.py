"""Everything that touches cryptography's x509 and hazmat lives here (enforced by ruff's TID251)."""
