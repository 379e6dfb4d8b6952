-- Generated from services/catalog.toml by `make catalog`: edit the catalog instead.
-- Runs once, when the compose PostgreSQL volume is first initialised
-- (/docker-entrypoint-initdb.d): one database per service, owned by the compose user.
-- After adding a service, `docker compose down -v` re-initialises the volume.
CREATE DATABASE amana_registry;
CREATE DATABASE amana_provider;
CREATE DATABASE amana_payroll;
CREATE DATABASE amana_disbursement;
CREATE DATABASE amana_psp_sandbox;
CREATE DATABASE amana_analytics;
