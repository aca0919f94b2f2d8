//! Command line: `vouch [serve]`, `vouch migrate`, `vouch keys create|list|revoke`.

use clap::{Parser, Subcommand, ValueEnum};

use crate::domain::api_key::Role;

#[derive(Debug, Parser)]
#[command(name = "vouch", version, about = "Referral and ambassador tracking for clinics")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret once.
    Create {
        #[arg(long)]
        role: RoleArg,
        #[arg(long)]
        name: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Staff,
    Finance,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Staff => Role::Staff,
            RoleArg::Finance => Role::Finance,
        }
    }
}
