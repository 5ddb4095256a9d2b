#!/bin/sh
# One-shot (temporalio/admin-tools): create Temporal's two PostgreSQL databases and bring their schemas up to date.
# Safe on every `docker compose up`: an existing database is kept, setup-schema keeps a newer version,
# update-schema applies only the versions not yet applied (so a new server image upgrades the schema too).
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS is required (the PostgreSQL host)}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${SQL_PASSWORD:?SQL_PASSWORD is required (read by temporal-sql-tool)}"
DB_PORT=${DB_PORT:-5432}
SCHEMA_ROOT=${SCHEMA_ROOT:-/etc/temporal/schema/postgresql/v12}

sql_tool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"
}

for db in "${TEMPORAL_DB:-temporal}:temporal" "${VISIBILITY_DB:-temporal_visibility}:visibility"; do
  name=${db%%:*}
  schema=${db#*:}
  echo "database $name: create if missing, then schema $SCHEMA_ROOT/$schema/versioned"
  sql_tool --db "$name" create
  sql_tool --db "$name" setup-schema -v 0.0
  sql_tool --db "$name" update-schema -d "$SCHEMA_ROOT/$schema/versioned"
done
echo "Temporal schema is up to date"
