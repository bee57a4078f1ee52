use clap::Parser;
use portcullis::cli::Cli;

fn main() -> std::process::ExitCode {
    Cli::parse().run()
}
