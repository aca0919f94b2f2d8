//! Rebuild when a migration is added or changed. `embed_migrations!` includes each migration
//! file it finds at compile time, so cargo tracks those files, but a new migration directory
//! is invisible to it: without this, adding one left the binary with the old set.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
