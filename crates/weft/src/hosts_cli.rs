//! `weft agent`, `weft host ...` and `weft join-token ...`: running a host
//! agent, enrolling a host, and administering hosts and join tokens.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use weft_client::Method;

use crate::Opts;
use crate::output::{Format, print_object};

/// `weft host ...`.
#[derive(Subcommand, Debug)]
pub enum HostCmd {
    /// Trade a join token for this host's certificate (run on the host).
    Enroll(weft_agent::cli::EnrollArgs),
    /// Hosts with their connection state and last-seen time.
    #[command(visible_alias = "ls")]
    List,
    /// Revoke a host's certificate; its connection closes at once.
    Revoke {
        /// Host name.
        name: String,
    },
    /// Remove a host; its connection closes at once.
    #[command(visible_alias = "rm")]
    Delete {
        /// Host name.
        name: String,
    },
}

/// `weft join-token ...`.
#[derive(Subcommand, Debug)]
pub enum JoinTokenCmd {
    /// Create a one-time join token (shown once) for `weft host enroll`.
    Create {
        /// Only this host name may use it.
        #[arg(long)]
        host: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Join tokens, without secrets.
    #[command(visible_alias = "ls")]
    List,
    /// Delete a join token.
    #[command(visible_alias = "rm")]
    Delete {
        /// Token id.
        id: String,
    },
}

/// Runs a `weft host` command.
pub async fn run_host(opts: &Opts, cmd: &HostCmd) -> Result<()> {
    if let HostCmd::Enroll(args) = cmd {
        return weft_agent::cli::run_enroll(args.clone()).await;
    }
    let c = crate::cli::client(opts)?;
    let (method, path) = match cmd {
        HostCmd::List => (Method::GET, "/v1/hosts".to_string()),
        HostCmd::Revoke { name } => (Method::POST, format!("/v1/hosts/{name}/revoke")),
        HostCmd::Delete { name } => (Method::DELETE, format!("/v1/hosts/{name}")),
        HostCmd::Enroll(_) => unreachable!("handled above"),
    };
    let (_, _, v) = c.request(method, &path, &[], None, None).await?;
    if let (HostCmd::List, Format::Table) = (cmd, opts.output) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        println!(
            "{:<24} {:<13} {:>10} {:>12}  remote",
            "host", "state", "last seen", "revision"
        );
        for h in v["hosts"].as_array().cloned().unwrap_or_default() {
            let seen = h["last_seen"].as_u64().map_or("never".to_string(), |t| {
                format!("{}s ago", now.saturating_sub(t))
            });
            println!(
                "{:<24} {:<13} {:>10} {:>12}  {}",
                h["name"].as_str().unwrap_or(""),
                h["state"].as_str().unwrap_or("?"),
                seen,
                h["applied_revision"].as_u64().unwrap_or(0),
                h["remote"].as_str().unwrap_or("")
            );
        }
    } else {
        print_object(opts.output, &v);
    }
    Ok(())
}

/// Runs a `weft join-token` command.
pub async fn run_join_token(opts: &Opts, cmd: &JoinTokenCmd) -> Result<()> {
    let c = crate::cli::client(opts)?;
    let (_, _, v) = match cmd {
        JoinTokenCmd::Create { host, ttl } => {
            c.request(
                Method::POST,
                "/v1/join-tokens",
                &[],
                Some(&json!({"host": host, "ttl_seconds": ttl})),
                None,
            )
            .await?
        }
        JoinTokenCmd::List => {
            c.request(Method::GET, "/v1/join-tokens", &[], None, None)
                .await?
        }
        JoinTokenCmd::Delete { id } => {
            c.request(
                Method::DELETE,
                &format!("/v1/join-tokens/{id}"),
                &[],
                None,
                None,
            )
            .await?
        }
    };
    print_object(opts.output, &v);
    Ok(())
}
