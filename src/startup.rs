//! Builds and runs the application: database, migrations, first admin key, HTTP server, the
//! mail worker and background housekeeping.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{middleware::from_fn, web, App, HttpServer};

use crate::auth::AuthCache;
use crate::config::{InlineReads, Settings};
use crate::db::{self, DatabaseUrl, DbPool};
use crate::domain::contact::ContactHasher;
use crate::email::worker::Worker as MailWorker;
use crate::http::{self, metrics::Metrics, rate_limit::RateLimiter};
use crate::store::{idempotency, portal, secrets};
use crate::web::CsrfKey;
use crate::webhooks::worker::Worker as WebhookWorker;

pub const INITIAL_ADMIN_KEY_FILE: &str = "initial-admin-key";

pub struct Application {
    port: u16,
    server: Server,
    pool: DbPool,
    /// The mail worker's and housekeeping's connections, apart from the requests'.
    background: DbPool,
    backend: &'static str,
    mail: MailWorker,
    webhooks: WebhookWorker,
    housekeeping_every: Duration,
}

/// Connects, migrates and returns the pool (used by `serve`, `migrate` and `keys`).
pub fn open_database(settings: &Settings) -> Result<(DbPool, DatabaseUrl), String> {
    let url = DatabaseUrl::parse(&settings.database.url)?;
    let cfg = &settings.database;
    let inline_reads = match cfg.inline_reads {
        InlineReads::Auto => url.is_on_this_machine(),
        InlineReads::On => true,
        InlineReads::Off => false,
    };
    let pool = db::build_pool(&url, cfg.pool_size, cfg.pool_min_idle, Duration::from_secs(cfg.connect_timeout_secs))?
        .with_inline_reads(inline_reads);
    let mut conn = pool.get().map_err(|e| format!("connecting to {}: {e}", url.redacted()))?;
    let ran = db::run_migrations(&mut conn)?;
    if ran > 0 {
        tracing::info!(migrations = ran, backend = url.backend(), "database migrated");
    }
    Ok((pool, url))
}

/// On a database with no API keys at all, creates an admin key and writes it to
/// `<data dir>/initial-admin-key` (mode 0600). Only the path is logged, never the key.
pub fn ensure_initial_admin_key(pool: &DbPool, data_dir: &Path) -> Result<Option<PathBuf>, String> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let Some(secret) = crate::app::api_keys::create_first_admin(&mut conn).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    std::fs::create_dir_all(data_dir).map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    let path = data_dir.join(INITIAL_ADMIN_KEY_FILE);
    write_private(&path, &format!("{secret}\n")).map_err(|e| format!("writing {}: {e}", path.display()))?;
    tracing::warn!(path = %path.display(), "no API keys existed: created an admin key and wrote it to this file (mode 0600)");
    Ok(Some(path))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())
}

impl Application {
    pub fn build(settings: Settings) -> Result<Self, String> {
        // Refuse an unknown zone before touching the database (tests build settings by hand).
        settings.calendar()?;
        let (pool, url) = open_database(&settings)?;
        ensure_initial_admin_key(&pool, &settings.data_dir)?;
        let (hasher, csrf) = {
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            let key =
                secrets::contact_hash_key(&mut conn, &settings.privacy.contact_hash_key).map_err(|e| e.to_string())?;
            let web_key = secrets::web_signing_key(&mut conn).map_err(|e| e.to_string())?;
            (ContactHasher::new(&key), CsrfKey::new(&web_key))
        };
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .map_err(|e| format!("binding {}:{}: {e}", settings.server.host, settings.server.port))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let metrics = web::Data::new(Metrics::default());
        let background = pool.sibling(settings.database.background_pool_size)?;
        let mail = MailWorker::new(background.clone(), &settings, metrics.clone().into_inner())?;
        let webhooks = WebhookWorker::new(background.clone(), &settings)?;
        let housekeeping_every = Duration::from_secs(settings.server.housekeeping_interval_secs.max(1));
        let server = run(listener, pool.clone(), hasher, csrf, metrics, settings)?;
        Ok(Self { port, server, pool, background, backend: url.backend(), mail, webhooks, housekeeping_every })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> DbPool {
        self.pool.clone()
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGINT/SIGTERM or the handle), draining in-flight requests; then
    /// stops the mail and webhook workers, letting what they are sending finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let janitor = tokio::spawn(housekeeping(self.background.clone(), self.housekeeping_every));
        let (stop_mail, stop) = tokio::sync::watch::channel(false);
        let mail = tokio::spawn(self.mail.run(stop.clone()));
        let webhooks = tokio::spawn(self.webhooks.run(stop));
        let result = self.server.await;
        janitor.abort();
        let _ = stop_mail.send(true);
        if let Err(e) = mail.await {
            tracing::error!(error = %e, "mail worker ended abnormally");
        }
        if let Err(e) = webhooks.await {
            tracing::error!(error = %e, "webhook worker ended abnormally");
        }
        result
    }
}

/// Deletes what has expired and must not be kept (`server.housekeeping_interval_secs`):
/// idempotency records past 24 hours, used-up login links and ended portal and console sessions.
async fn housekeeping(pool: DbPool, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let purged = crate::db::blocking(&pool, |conn| -> Result<usize, crate::db::TaskError> {
            Ok(idempotency::purge_expired(conn)?
                + portal::purge_expired(conn)?
                + crate::app::team::purge_expired(conn)?)
        })
        .await;
        match purged {
            Ok(n) if n > 0 => tracing::debug!(purged = n, "expired records removed"),
            Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
            _ => {}
        }
    }
}

fn run(
    listener: TcpListener,
    pool: DbPool,
    hasher: ContactHasher,
    csrf: CsrfKey,
    metrics: web::Data<Metrics>,
    settings: Settings,
) -> Result<Server, String> {
    let pool = web::Data::new(pool);
    let hasher = web::Data::new(hasher);
    let csrf = web::Data::new(csrf);
    let limiter = web::Data::new(RateLimiter::new(settings.rate_limit.public_per_minute));
    let calendar = web::Data::new(settings.calendar()?);
    let auth_cache = web::Data::new(AuthCache::new(Duration::from_secs(settings.auth.cache_ttl_secs)));
    let workers = settings.server.workers;
    let shutdown = settings.server.shutdown_timeout_secs;
    let settings = web::Data::new(settings);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(pool.clone())
            .app_data(hasher.clone())
            .app_data(csrf.clone())
            .app_data(metrics.clone())
            .app_data(limiter.clone())
            .app_data(calendar.clone())
            .app_data(auth_cache.clone())
            .app_data(settings.clone())
            .wrap(from_fn(http::check_head))
            .wrap(from_fn(http::observe))
            .configure(crate::routes::configure)
            .configure(crate::web::configure)
            .route("/openapi.json", web::get().to(crate::openapi::document))
            .service(
                utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                    .config(utoipa_swagger_ui::Config::new(["/openapi.json"])),
            )
            .service(web::redirect("/docs", "/docs/"))
            .default_service(web::to(http::not_found))
    })
    .shutdown_timeout(shutdown)
    .listen(listener)
    .map_err(|e| e.to_string())?;
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}
