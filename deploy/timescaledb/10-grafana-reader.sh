#!/bin/sh
# First start of the TimescaleDB container: a read-only role for Grafana's
# PostgreSQL datasource (it can read every table and view, write nothing).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v pw="$GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE grafana LOGIN PASSWORD :'pw';
GRANT pg_read_all_data TO grafana;
ALTER ROLE grafana SET statement_timeout = '30s';
SQL
