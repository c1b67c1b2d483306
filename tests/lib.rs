//! Integration tests: every test drives the real `runbook` binary.

mod support;

mod cli;
