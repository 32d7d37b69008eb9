//! One module per top-level command.

pub mod config;
pub mod doctor;
pub mod env;
pub mod events;
pub mod gc;
pub mod init;
pub mod net;
pub mod pkg;
pub mod port;
pub mod proc;
pub mod run;
pub mod status;
