#!/bin/bash
# Runs once, when the PostgreSQL volume is created: the project's own store gets its own database and role.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE ${ADMISSION_DB_USER} LOGIN PASSWORD '${ADMISSION_DB_PASSWORD}';
CREATE DATABASE admission OWNER ${ADMISSION_DB_USER};
SQL
