//! The `vouch` binary's key commands, against the same database as the running app.

use std::process::Command;

use reqwest::StatusCode;

use crate::helpers::spawn_app_with;

/// Runs the `vouch` binary against the app's database; (succeeded, stdout, stderr).
pub fn vouch(app: &crate::helpers::TestApp, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args(args)
        .env("VOUCH__DATABASE__URL", &app.settings.database.url)
        .env("VOUCH__DATA_DIR", &app.data_dir)
        .env("VOUCH__SERVER__PUBLIC_URL", &app.address)
        .env("VOUCH__LOG__LEVEL", "warn")
        .output()
        .expect("vouch runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn keys_created_listed_and_revoked_from_the_command_line() {
    // The command is another process: it cannot evict the server's cache of verified keys, so
    // with the cache on its revocation reaches the server within `auth.cache_ttl_secs`
    // (tests/api/auth_cache.rs). Off here, so the revocation itself is checked at once.
    let app = spawn_app_with(|s| s.auth.cache_ttl_secs = 0).await;
    let (ok, stdout, stderr) = vouch(&app, &["keys", "create", "--role", "finance", "--name", "Books"]);
    assert!(ok, "{stderr}");
    let secret = stdout.trim().to_owned();
    assert!(secret.starts_with("vk_live_"), "{stdout}");
    // Finance may not list ambassadors: the key is real and carries its role.
    assert_eq!(app.get("/v1/ambassadors", &secret).await.status(), StatusCode::FORBIDDEN);

    let (ok, stdout, _) = vouch(&app, &["keys", "list"]);
    assert!(ok);
    assert!(stdout.contains("finance") && stdout.contains("Books"));
    assert!(!stdout.contains(&secret));
    let id = stdout.lines().find(|l| l.contains("Books")).unwrap().split('\t').next().unwrap().to_owned();

    let (ok, _, stderr) = vouch(&app, &["keys", "revoke", &id]);
    assert!(ok, "{stderr}");
    assert_eq!(app.get("/v1/ambassadors", &secret).await.status(), StatusCode::UNAUTHORIZED);

    let (ok, _, stderr) = vouch(&app, &["keys", "create", "--role", "owner", "--name", "x"]);
    assert!(!ok && stderr.contains("owner"));
    let (ok, stdout, _) = vouch(&app, &["migrate"]);
    assert!(ok && stdout.contains("up to date"));
}
