//! The pages' stylesheet and script, embedded in the binary (no CDN: the pages work offline).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const CSS: &str = include_str!("../../templates/web/vouch.css");
const JS: &str = include_str!("../../templates/web/vouch.js");

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/assets/vouch.css").route(web::get().to(css)))
        .service(super::resource("/assets/vouch.js").route(web::get().to(js)));
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

async fn css() -> HttpResponse {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", JS)
}
