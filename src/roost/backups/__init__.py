"""Encrypted backups: the stream format (format.py), age encryption (crypto.py), create/restore/verify
(service.py) and automated schedules (schedule.py). See docs/backups.md."""
