use portcullis::cli::Cli;

fn main() -> std::process::ExitCode {
    Cli::from_env().run()
}
