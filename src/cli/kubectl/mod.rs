//! `kubectl portcullis`: the binary installed under the name
//! `kubectl-portcullis` (or `portcullis kubectl`), for the questions and
//! chores of the people who run Portcullis, with kubectl's conventions
//! (`-n`, `--context`, `--kubeconfig`, `KUBECONFIG`).
//!
//! ```text
//!  check PRINCIPAL PERMISSION [-w W]  the decision (exit 0 allowed, 1 denied) ─┐ the check and admin APIs, as the
//!  why PRINCIPAL PERMISSION [-w W]    …and the grant that decides it          │ OAuthClient named by --client
//!  users                              the organization's users                │ (its Secret read with your
//!  audit export [-o FILE]             the audit trail as JSON Lines          ─┘ kubeconfig), at the issuer
//!  audit verify FILE [--head HASH]    checks an export, offline                  or --token-service
//!  rotate-keys ORG                    annotates the Organization: the operator publishes a new key now
//!  scim-token IDP                     replaces the SCIM token Secret; prints the new token once
//! ```
//!
//! The API commands act as an OAuthClient rather than as the person: your
//! Kubernetes RBAC on that client's Secret is what lets you use it, and the
//! client's role assignments are what it may see (`iam.view`; `iam.export-audit`
//! for the audit trail), both kept in Git like every other grant.

mod api;
mod cluster;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use self::api::AdminApi;
use self::cluster::Cluster;

/// Where the cluster is, and as whom the APIs are called.
#[derive(Args, Debug)]
pub struct KubectlArgs {
    /// The namespace of the organization (default: the kubeconfig context's).
    #[arg(long, short = 'n', global = true)]
    namespace: Option<String>,

    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,

    /// The kubeconfig file (default: `KUBECONFIG`, then `~/.kube/config`).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,

    /// The OAuthClient (in the namespace) the API commands act as; its
    /// client secret is read from the Secret its status names.
    #[arg(long, global = true, env = "PORTCULLIS_CLIENT")]
    client: Option<String>,

    /// Call the token service here instead of at the issuer in the
    /// Organization's status (e.g. `http://127.0.0.1:8080` through
    /// `kubectl port-forward`); plain http only to loopback.
    #[arg(long, global = true, env = "PORTCULLIS_TOKEN_SERVICE", value_name = "URL")]
    token_service: Option<String>,

    #[command(subcommand)]
    command: KubectlCommand,
}

#[derive(Subcommand, Debug)]
enum KubectlCommand {
    /// Whether a principal holds a permission: prints the decision, exits 0
    /// when allowed and 1 when denied.
    Check(CheckArgs),
    /// The decision and what decides it: the assignment, role, group and scope.
    Why(CheckArgs),
    /// The organization's users.
    Users,
    /// Export or verify the organization's audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Ask the operator to rotate an Organization's signing keys now.
    RotateKeys {
        /// The Organization's name.
        organization: String,
    },
    /// Replace an IdentityProvider's SCIM bearer token and print the new one.
    ScimToken {
        /// The IdentityProvider's name.
        identity_provider: String,
    },
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// A userName, or `group/NAME` or `client/NAME`.
    principal: String,
    /// A permission of the organization's catalog, e.g. `iam.manage`.
    permission: String,
    /// The workspace to check in (default: the organization scope).
    #[arg(long, short = 'w')]
    workspace: Option<String>,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Write the audit trail as JSON Lines (what `audit verify` checks).
    Export {
        /// Write here instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check an export: an edited, removed or reordered event is named by its line.
    Verify {
        file: PathBuf,
        /// The chain head to expect at the end (`GET …/api/v1/audit/head`).
        #[arg(long, value_name = "HASH")]
        head: Option<String>,
    },
}

/// Exit codes: 0 done (or allowed), 1 denied (or the export does not
/// verify), 2 the command could not be carried out.
pub fn run(args: KubectlArgs) -> ExitCode {
    if let KubectlCommand::Audit(AuditCommand::Verify { file, head }) = &args.command {
        return super::audit::verify_file(file, head.as_deref());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(execute(args)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn execute(args: KubectlArgs) -> anyhow::Result<ExitCode> {
    let cluster =
        Cluster::connect(args.kubeconfig.as_deref(), args.context.as_deref(), args.namespace.as_deref())
            .await?;
    let admin_api = || AdminApi::connect(&cluster, args.client.as_deref(), args.token_service.as_deref());
    match args.command {
        KubectlCommand::Check(check) => {
            let decision = admin_api()
                .await?
                .check(&check.principal, &check.permission, check.workspace.as_deref())
                .await?;
            println!("{}", decision.explanation);
            Ok(decision.exit_code())
        }
        KubectlCommand::Why(check) => {
            let decision = admin_api()
                .await?
                .check(&check.principal, &check.permission, check.workspace.as_deref())
                .await?;
            print!("{}", decision.trail(&cluster).await);
            Ok(decision.exit_code())
        }
        KubectlCommand::Users => {
            admin_api().await?.print_users().await?;
            Ok(ExitCode::SUCCESS)
        }
        KubectlCommand::Audit(AuditCommand::Export { output }) => {
            admin_api().await?.export_audit(output.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        KubectlCommand::Audit(AuditCommand::Verify { .. }) => unreachable!("verified offline above"),
        KubectlCommand::RotateKeys { organization } => {
            cluster.rotate_keys(&organization).await?;
            Ok(ExitCode::SUCCESS)
        }
        KubectlCommand::ScimToken { identity_provider } => {
            let token = cluster.rotate_scim_token(&identity_provider).await?;
            // Only the token on standard output, so that it can be piped.
            println!("{}", token.expose());
            Ok(ExitCode::SUCCESS)
        }
    }
}
