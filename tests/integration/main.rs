//! Integration tests against real slapd, Postgres and Prometheus, started
//! by pglab's own stack code. One binary, to keep link time low.

mod api_clients;
mod api_v1;
mod attacks;
mod bad_input;
mod browser;
mod clubdata;
mod evidence;
mod exports;
mod hostile;
mod in_psql;
mod mail;
mod mutants;
mod observability;
mod provisioning;
mod replicas;
mod scoring;
mod servers;
mod submission_restarts;
mod submissions;
mod support;
mod up_binary;
mod web;
mod web_security;
