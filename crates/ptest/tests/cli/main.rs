//! ptest's command-line integration tests, one binary with a module per area (as nextest's
//! integration-tests and ripgrep's tests/tests.rs): one link instead of one per file, and one
//! place to see what is covered. Run one area with `cargo nextest run -p ptest -E
//! 'test(/^hostile::/)'`.

mod support;

mod bad_input;
mod concurrency;
mod crash;
mod crash_docker;
mod docker;
mod docker_exec_client;
mod docker_hostile;
mod env_lifecycle;
mod gc_events_config;
mod hooks;
mod hostile;
mod init_infer;
mod lifecycle;
mod net;
mod network;
mod planted;
mod ports;
mod proc;
mod quota;
mod removal;
mod run;
mod run_args;
mod run_docker;
mod run_matrix;
mod run_owner;
mod run_project;
mod run_resume;
mod run_services;
mod run_split;
mod run_summary;
mod sandbox;
mod show_text;
mod store_damage;
mod virtualenv;
mod watch;
