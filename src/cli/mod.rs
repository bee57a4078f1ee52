//! The `portcullis` command line: one subcommand per process or tool.

pub mod audit;
pub mod crds;
pub mod diff;
pub mod kubectl;
pub mod openapi;
pub mod operator;
pub mod process;
pub mod scim_service;
pub mod standalone;
pub mod token_service;
pub mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Identity and access management for Kubernetes, driven by CRDs.
#[derive(Parser, Debug)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print every CustomResourceDefinition as YAML (or write one file per kind).
    Crds {
        /// Write `<kind>.yaml` files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print the admin API's OpenAPI 3.1 document (JSON), as served at
    /// `{issuer}/api/v1/openapi.json`.
    Openapi {
        /// The issuer to name as the document's server.
        #[arg(long, default_value = "http://localhost:8080/o/acme")]
        issuer: String,
    },
    /// Check a folder of manifests before merging: schema, references,
    /// unknown permissions, privilege escalation. Prints `file:line:` findings.
    Validate {
        /// Folder holding the YAML manifests (searched recursively), or one file.
        dir: PathBuf,
    },
    /// Review a change to the manifests as access: who gains and loses which
    /// permission, through which role and assignment (folders or git revisions).
    Diff(Box<diff::DiffArgs>),
    /// Serve everything in one process on SQLite, from a folder of manifests
    /// (the embedded default: try Portcullis, or a role change, locally).
    Standalone(Box<standalone::StandaloneArgs>),
    /// Run the controllers that reconcile Portcullis resources into the store.
    Operator(Box<operator::OperatorArgs>),
    /// Serve the OpenID provider of every organization (tokens, login, check API).
    TokenService(Box<token_service::TokenServiceArgs>),
    /// Serve SCIM 2.0 provisioning (Users, Groups) for every organization.
    ScimService(Box<scim_service::ScimServiceArgs>),
    /// Export or verify an organization's tamper-evident audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The kubectl plugin (`kubectl portcullis …`, this binary linked as
    /// `kubectl-portcullis`): check, why, users, audit, rotate-keys, scim-token.
    Kubectl(Box<kubectl::KubectlArgs>),
}

impl Cli {
    /// Runs the chosen subcommand and returns the process exit code.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Crds { out_dir } => crds::run(out_dir.as_deref()),
            Command::Openapi { issuer } => openapi::run(&issuer),
            Command::Validate { dir } => validate::run(&dir),
            Command::Diff(args) => diff::run(*args),
            Command::Standalone(args) => standalone::run(*args),
            Command::Operator(args) => operator::run(*args),
            Command::TokenService(args) => token_service::run(*args),
            Command::ScimService(args) => scim_service::run(*args),
            Command::Audit(command) => audit::run(command),
            Command::Kubectl(args) => kubectl::run(*args),
        }
    }

    /// Parses the process's arguments. Run under the name `kubectl-portcullis`
    /// (how kubectl finds plugins), the arguments are the plugin's.
    pub fn from_env() -> Self {
        let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let invoked_as = args.first().map(PathBuf::from);
        let stem = invoked_as.as_deref().and_then(|p| p.file_stem()).and_then(|s| s.to_str());
        if stem == Some(KUBECTL_PLUGIN_NAME) {
            args.insert(1, "kubectl".into());
        }
        Cli::parse_from(args)
    }
}

/// The name kubectl looks for to run `kubectl portcullis`.
pub const KUBECTL_PLUGIN_NAME: &str = "kubectl-portcullis";
