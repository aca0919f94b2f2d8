use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vouch::app::api_keys;
use vouch::app::imports;
use vouch::app::team::{self, Invitation};
use vouch::cli::{Cli, Command, ImportCommand, KeysCommand, TalliesCommand, TeamCommand};
use vouch::config::{LogFormat, Settings};
use vouch::domain::api_key::{NewKey, Role, NAME_MAX};
use vouch::domain::team::NewMember;
use vouch::error::ApiError;
use vouch::startup::{open_database, Application};
use vouch::store::audit::Actor;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vouch: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&settings);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Migrate => {
            open_database(&settings).map(|(_, url)| println!("database {} is up to date", url.redacted()))
        }
        Command::Keys { action } => keys(&settings, action),
        Command::Team { action } => team_command(&settings, action),
        Command::Import { what } => import(&settings, what),
        Command::Tallies { action } => tallies(&settings, action),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vouch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(settings: &Settings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn serve(settings: Settings) -> Result<(), String> {
    vouch::http::memory::tune();
    actix_web::rt::System::new().block_on(async move {
        let host = settings.server.host.clone();
        let db = settings.database.url.clone();
        let app = Application::build(settings)?;
        let url = format!("http://{host}:{}", app.port());
        println!(
            "Vouch is serving the API at {url} (docs: {url}/docs/, database: {})",
            vouch::db::DatabaseUrl::parse(&db)?.redacted()
        );
        tracing::info!(%url, backend = app.backend(), "listening");
        app.run_until_stopped().await.map_err(|e| e.to_string())
    })
}

/// A key whose stored role is unknown is listed as such (it is refused when used).
fn role_name(role: Option<Role>) -> &'static str {
    role.map_or("unknown-role", Role::as_str)
}

fn keys(settings: &Settings, action: KeysCommand) -> Result<(), String> {
    let (pool, _) = open_database(settings)?;
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    match action {
        KeysCommand::Create { role, name } => {
            let new = NewKey::parse(&name, Ok(role.into()))
                .map_err(|_| format!("--name must be 1 to {NAME_MAX} characters"))?;
            let (key, secret) = api_keys::create(&mut conn, &new, &Actor::system()).map_err(|e| e.to_string())?;
            eprintln!("created {} key {} ({}); the secret is shown once:", role_name(key.role), key.id, key.name);
            println!("{secret}");
        }
        KeysCommand::List => {
            for k in api_keys::list(&mut conn).map_err(|e| e.to_string())? {
                let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{}\t{}\t{}…\t{}\t{}", k.id, role_name(k.role), k.prefix, state, k.name);
            }
        }
        KeysCommand::Revoke { id } => {
            let k = api_keys::revoke(&mut conn, &id, &Actor::system()).map_err(|e| e.to_string())?;
            println!("revoked {} ({})", k.id, k.name);
        }
    }
    Ok(())
}

/// A refusal as the API would explain it (`detail`, and each bad field after `prefix`).
fn explain_as(prefix: &str, e: impl Into<ApiError>) -> String {
    let problem = e.into().problem();
    let fields: Vec<String> = problem.errors.iter().map(|f| format!("{prefix}{} {}", f.field, f.message)).collect();
    if fields.is_empty() {
        problem.detail
    } else {
        fields.join("; ")
    }
}

/// A refused option, named as typed (`--email …`).
fn explain(e: impl Into<ApiError>) -> String {
    explain_as("--", e)
}

fn team_command(settings: &Settings, action: TeamCommand) -> Result<(), String> {
    let (pool, _) = open_database(settings)?;
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    match action {
        TeamCommand::Invite { role, email, name } => {
            let new = NewMember::parse(name.as_deref(), &email, Ok(role.into()))
                .map_err(|e| explain(vouch::app::Error::from(e)))?;
            let url = settings.public_url();
            let how = Invitation::Print { public_url: &url };
            let (member, link) = team::invite(&mut conn, &new, how, &Actor::system()).map_err(explain)?;
            eprintln!(
                "invited {} <{}> as {}; their sign-in link works once, for 24 hours, and is shown only now:",
                member.name, member.email, member.role
            );
            println!("{}", link.unwrap_or_default());
        }
    }
    Ok(())
}

/// Checks or rebuilds the ambassadors' running totals (`store::tallies`).
fn tallies(settings: &Settings, action: TalliesCommand) -> Result<(), String> {
    use vouch::store::tallies;
    let (pool, _) = open_database(settings)?;
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    match action {
        TalliesCommand::Check => {
            let wrong = tallies::recount_mismatches(&mut conn).map_err(|e| e.to_string())?;
            for (ambassador, tally, kept, counted) in &wrong {
                println!("{ambassador}\t{tally}\tkept {kept}\tcounted {counted}");
            }
            if !wrong.is_empty() {
                return Err(format!(
                    "{} running totals differ from a recount (`vouch tallies recount` rebuilds them)",
                    wrong.len()
                ));
            }
            eprintln!("every running total matches a recount");
        }
        TalliesCommand::Recount => {
            let n = vouch::db::write_tx(&mut conn, tallies::recount).map_err(|e| e.to_string())?;
            eprintln!("counted {n} running totals again");
        }
    }
    Ok(())
}

/// Runs an import, printing each row's outcome (tab-separated: line, outcome, the row's key,
/// the id or the refused fields) as its chunk finishes, and the totals last (on stderr).
/// Audit events name the actor `system` with the id `cli`.
fn import(settings: &Settings, what: ImportCommand) -> Result<(), String> {
    let (kind, file, opts) = match what {
        ImportCommand::Ambassadors { file, dry_run, send_welcome } => {
            (imports::Kind::Ambassadors, file, imports::Options { dry_run, send_welcome })
        }
        ImportCommand::Referrals { file, dry_run } => {
            (imports::Kind::Referrals, file, imports::Options { dry_run, send_welcome: false })
        }
    };
    let input = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let (pool, _) = open_database(settings)?;
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let calendar = settings.calendar()?;
    let mail = vouch::email::MailContext::new(settings);
    let key = vouch::store::secrets::contact_hash_key(&mut conn, &settings.privacy.contact_hash_key)
        .map_err(|e| e.to_string())?;
    let hasher = vouch::domain::contact::ContactHasher::new(&key);
    let actor = Actor { id: Some("cli".into()), ..Actor::system() };
    let ctx = imports::Context { settings, calendar: &calendar, mail: &mail, hasher: &hasher, actor: &actor };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut print = |r: &imports::RowReport| {
        use std::io::Write;
        let what = match r.errors.is_empty() {
            true => r.id.clone().unwrap_or_default(),
            false => r.errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "),
        };
        let key = r.key.as_deref().unwrap_or("");
        let _ = writeln!(out, "line {}\t{}\t{key}\t{what}", r.line, r.outcome.as_str());
    };
    let totals =
        imports::run(&mut conn, kind, std::io::BufReader::with_capacity(1 << 16, input), opts, &ctx, &mut print)
            .map_err(|e| explain_as("", e))?;
    drop(out);
    eprintln!(
        "{}{} created, {} updated, {} unchanged, {} refused",
        if opts.dry_run { "dry run (nothing was changed): " } else { "" },
        totals.created,
        totals.updated,
        totals.unchanged,
        totals.refused
    );
    Ok(())
}
