//! `/apply`: the ambassador application form; records an `applied` ambassador and alerts
//! staff exactly as `POST /v1/public/ambassador-applications` does.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::context;

use super::{csrf, form_again, page, rate_limit, resource, see_other, CsrfKey, Form, WebError};
use crate::app::public::{parse_application, store_application, AmbassadorApplication};
use crate::config::Settings;
use crate::db::blocking;
use crate::db::DbPool;
use crate::email::MailContext;
use crate::http::PublicRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/apply").route(web::get().to(show)).route(web::post().to(submit)))
        .service(resource("/apply/thanks").route(web::get().to(thanks)));
}

async fn show(
    req: HttpRequest,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
) -> Result<HttpResponse, WebError> {
    let (binding, new_cookie) = csrf::visitor_or_new(&req, &settings);
    let ctx = context! { brand => settings.email.brand_name, csrf => key.token(&binding) };
    page(StatusCode::OK, "apply.html", ctx, new_cookie)
}

async fn submit(
    req: HttpRequest,
    ctx: PublicRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    rate_limit(&req)?;
    key.check(csrf::visitor(&req).as_ref(), &form)?;
    let input = AmbassadorApplication {
        name: form.text("name"),
        email: form.text("email"),
        phone: form.optional("phone"),
        display_name: form.optional("display_name"),
        show_name_to_referrals: form.checked("show_name_to_referrals"),
        message: form.optional("message"),
    };
    let new = match parse_application(&settings, input) {
        Ok(new) => new,
        Err(e) => return form_again("apply.html", &settings, &form, e, context! {}),
    };
    let (actor, mail) = (ctx.actor(), MailContext::new(&settings));
    blocking(&pool, move |c| store_application(c, &new, &mail, &actor)).await?;
    Ok(see_other("/apply/thanks").finish())
}

async fn thanks(settings: web::Data<Settings>) -> Result<HttpResponse, WebError> {
    page(StatusCode::OK, "applied.html", context! { brand => settings.email.brand_name }, None)
}
