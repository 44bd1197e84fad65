//! The app layer: the app server as a child process and the way to it.
//!
//! Owns spawning and supervising the child (`supervisor`, `lifecycle`,
//! `crash_history`, `fd_limit`), knowing when it is ready (`readiness`,
//! reading the ports it listens on from /proc in `ports`, the deep health
//! check), restarting it on request (`control_socket`), and the pooled
//! connections requests are forwarded on (`target`, `upstream`), within
//! THRUST_MAX_APP_CONNECTIONS (`app_connections`).
//!
//! May call: config, http (body types), conn (its accept loop, for the
//! control socket), metrics. May not call TLS, the pipeline or the server:
//! requests reach the app only through `upstream`, which the pipeline holds.

pub mod app_connections;
pub mod control_socket;
pub mod crash_history;
pub mod deep_check;
pub mod fd_limit;
pub mod lifecycle;
pub mod ports;
pub mod readiness;
pub mod supervisor;
pub mod target;
pub mod upstream;
