-- Runs once, when the container creates its database (docker-entrypoint-initdb.d).
-- The migrations create the extension too; this makes the database ready before they run.
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
