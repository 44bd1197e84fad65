//! The `thrust` binary: the command line lives in `thrust::cli`.

fn main() -> std::process::ExitCode {
    thrust::cli::main()
}
