//! Command line: `vouch [serve]`, `vouch migrate`, `vouch keys create|list|revoke`,
//! `vouch team invite`, `vouch import ambassadors|referrals`, `vouch tallies check|recount`.

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
    /// Manage the team members who sign in to the console.
    Team {
        #[command(subcommand)]
        action: TeamCommand,
    },
    /// Import from a CSV file (see the README's Import section for the columns).
    Import {
        #[command(subcommand)]
        what: ImportCommand,
    },
    /// The ambassadors' running totals (referral counts and reward sums the detail, /v1/me
    /// and the portal read), kept by database triggers.
    Tallies {
        #[command(subcommand)]
        action: TalliesCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TalliesCommand {
    /// Count everything again and print each total that differs; exits 1 if any does.
    Check,
    /// Count everything again and replace the totals, in one transaction (after SQL that ran
    /// without triggers, such as a restore with `session_replication_role = replica`).
    Recount,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Ambassadors, their existing codes and opening balances; a row whose e-mail address is
    /// already there updates that ambassador. Prints one line per row.
    Ambassadors {
        file: std::path::PathBuf,
        /// Report what would be created, updated or refused, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Queue the welcome e-mail for each ambassador created active (off by default).
        #[arg(long)]
        send_welcome: bool,
    },
    /// Referred clients in any status with their dates (import the ambassadors first: a row
    /// names its ambassador by code). No e-mail is sent. Prints one line per row.
    Referrals {
        file: std::path::PathBuf,
        /// Report what would be created or refused, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Add a team member and print their one-time sign-in link (valid 24 hours) once; no
    /// e-mail is sent (the way in for the first admin).
    Invite {
        #[arg(long)]
        role: RoleArg,
        #[arg(long)]
        email: String,
        /// Defaults to the part of the e-mail address before `@`.
        #[arg(long)]
        name: Option<String>,
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
