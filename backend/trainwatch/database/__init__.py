"""TimescaleDB's Django backend, answering promptly when the database is gone (see base.py)."""
