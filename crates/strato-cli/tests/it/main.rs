//! Integration tests: the real server on a real socket (port 0), a fresh data directory per test, and the real
//! embedding model where training or prediction is involved (STRATO_TEST_MODEL_DIR; skipped with a message when
//! unset — scripts/test.sh and CI set it).

mod albert;
mod backend;
mod capabilities;
mod cli;
mod common;
mod errors;
mod faults;
mod files;
mod gateway;
mod jobs;
mod mentors;
mod openapi;
mod outages;
mod restart;
mod training;
mod workflow_jobs;
