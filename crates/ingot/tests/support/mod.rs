//! Test support for the end-to-end tests: a Foo server and client, and a handle on a real
//! `ingot proxy` process.

#![allow(dead_code)] // each test file uses a different part

pub mod foo;
pub mod process;
