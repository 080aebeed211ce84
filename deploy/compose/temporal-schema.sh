#!/bin/sh
# One-shot (temporalio/admin-tools): Temporal's persistence and visibility schemas in PostgreSQL, before the
# server starts. A database this creates gets the base schema; every run then applies the versioned updates it
# lacks, so the same command sets up a fresh volume and upgrades after a new admin-tools and server version.
set -eu
SQL_PASSWORD="$(cat /run/secrets/database_password)"
export SQL_PASSWORD  # temporal-sql-tool reads it: the password never appears on a command line

sql() {
    temporal-sql-tool --plugin postgres12 --endpoint "$POSTGRES_SEEDS" --port "$DB_PORT" --user "$POSTGRES_USER" "$@"
}

for database in "$DBNAME:temporal" "$VISIBILITY_DBNAME:visibility"; do
    name=${database%%:*}
    schema=${database#*:}
    if sql --database "$name" create-database; then  # fails when it exists: its schema is there already
        sql --database "$name" setup-schema --version 0.0
    fi
    sql --database "$name" update-schema --schema-dir "/etc/temporal/schema/postgresql/v12/$schema/versioned"
done
