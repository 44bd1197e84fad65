//! The command line: `thrust CMD`, `thrust check`, `thrust restart`,
//! `--help` and `--version`.
//!
//! Owns the arguments, the usage text and the exit codes. Everything it does
//! is a call into the layers below (`crate::run`, `config`, `app::control_socket`).

pub mod check;
mod help;

use std::process::ExitCode;

use crate::app::control_socket;
use crate::config::Config;

/// thrust's `main`: dispatches on the first argument.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            eprintln!("{}", help::usage());
            return ExitCode::from(2);
        }
        Some("-h" | "--help") => {
            println!("{}", help::usage());
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("thrust {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("check") => return ExitCode::from(check::run(&args[1..])),
        Some("restart") if args.len() == 1 => {
            return match Config::from_env() {
                Ok(config) => ExitCode::from(control_socket::request_restart(&config)),
                Err(e) => {
                    eprintln!("thrust: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(_) => {}
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("thrust: {e}");
            return ExitCode::from(2);
        }
    };
    crate::log::init(config.debug);
    let code = crate::run(config, args);
    crate::log::flush();
    ExitCode::from(code)
}
