use std::process::ExitCode;

use thrust::config::{help_text, Config};

fn usage() -> String {
    format!(
        "Usage: thrust CMD [ARGS...]\n       thrust check [CMD [ARGS...]]\n       thrust restart\n\n\
         Runs CMD (your app server) as a child process and serves it on HTTP_PORT,\n\
         with the health check, proxying, logging and limits described below.\n\n\
         thrust check prints the configuration as thrust resolves it (each value and\n\
         the variable it came from), checks what start-up checks (values, certificate\n\
         files, ports, the command) without starting anything, and exits 0 or with\n\
         start-up's code and message.\n\n\
         thrust restart asks the thrust running here (the one on HTTP_PORT) to start a\n\
         new copy of the app, send new requests to it once it is ready, and stop the\n\
         old copy once its requests are done; exits 0 once the new copy serves.\n\n\
         Environment variables (THRUST_NAME > THRUSTER_NAME > NAME):\n{}",
        help_text()
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            eprintln!("{}", usage());
            return ExitCode::from(2);
        }
        Some("-h" | "--help") => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("thrust {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("check") => return ExitCode::from(thrust::check::run(&args[1..])),
        Some("restart") if args.len() == 1 => {
            return match Config::from_env() {
                Ok(config) => ExitCode::from(thrust::control::request_restart(&config)),
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
    thrust::log::init(config.debug);
    let code = thrust::run(config, args);
    thrust::log::flush();
    ExitCode::from(code)
}
