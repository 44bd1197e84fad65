//! `thrust --help`: the usage, then every variable from the configuration table.

use crate::config::help_text;

pub fn usage() -> String {
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
