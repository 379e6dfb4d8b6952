-- Runs once, when the compose PostgreSQL volume is first initialised
-- (/docker-entrypoint-initdb.d). One database per service, owned by the compose user.
-- Adding a service: add its database here and `docker compose down -v` to re-initialise.
CREATE DATABASE amana_registry;
CREATE DATABASE amana_provider;
CREATE DATABASE amana_payroll;
CREATE DATABASE amana_disbursement;
CREATE DATABASE amana_analytics;
