//! The answer to a request no route takes: `405 method_not_allowed` with an `Allow` header when
//! the path exists with other methods, else `404 not_found`; both with the JSON error body.
//!
//! The paths and their methods come from the OpenAPI document (`routes::ApiDoc`), which a
//! test (tests/tests/openapi.rs) checks against the router.

use std::sync::OnceLock;

use actix_web::dev::ResourceDef;
use actix_web::HttpRequest;
use utoipa::OpenApi;

use crate::error::ApiError;

/// Routes served outside the OpenAPI document.
const UNDOCUMENTED: &[(&str, &str)] = &[("/openapi.json", "GET")];

fn known_paths() -> &'static [(ResourceDef, Vec<&'static str>)] {
    static PATHS: OnceLock<Vec<(ResourceDef, Vec<&'static str>)>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let doc = crate::routes::ApiDoc::openapi();
        let mut out: Vec<(ResourceDef, Vec<&'static str>)> = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ]
                .into_iter()
                .filter_map(|(m, has)| has.then_some(m))
                .collect();
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        out.extend(UNDOCUMENTED.iter().map(|(p, m)| (ResourceDef::new(*p), vec![*m])));
        out
    })
}

/// The app's default service.
pub async fn unmatched(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let mut allowed: Vec<&'static str> = Vec::new();
    for (def, methods) in known_paths() {
        if def.is_match(req.path()) {
            for m in methods {
                if !allowed.contains(m) {
                    allowed.push(m);
                }
            }
        }
    }
    if allowed.is_empty() {
        Err(ApiError::NotFound)
    } else {
        Err(ApiError::MethodNotAllowed(allowed))
    }
}
