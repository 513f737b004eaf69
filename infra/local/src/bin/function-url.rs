//! `function-url`: the local stand-in for API Gateway's CORS in front of the auth-code
//! function (cargo lambda's function URL answers any origin; API Gateway does not).
//!
//! Preflights (`OPTIONS`) are answered here, as API Gateway answers them, by
//! `template.yaml`'s `CorsConfiguration` and the origins in `ALLOWED_ORIGINS` (the
//! `AllowedOrigins` parameter): an allowed origin asking for an allowed method and headers
//! gets `204` with the `Access-Control-Allow-*` headers; any other gets `204` without them,
//! and the browser stops. Other requests go to `UPSTREAM` (cargo lambda's
//! `/lambda-url/auth-code`) and come back with `Access-Control-Allow-Origin` only for an
//! allowed origin. Each preflight is logged (origin, allowed) for `make dev-check`.
//!
//! Env: `LISTEN` (127.0.0.1:PORT), `UPSTREAM`, `ALLOWED_ORIGINS` (comma list),
//! `TEMPLATE` (default `template.yaml`).

#![allow(clippy::print_stdout, reason = "a local tool: its log is its standard output")]

use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use local_stack::CorsRules;

struct Front {
    rules: CorsRules,
    origins: Vec<String>,
    upstream: String,
    http: reqwest::Client,
}

impl Front {
    fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins.iter().any(|o| o == text).then(|| origin.clone())
    }

    fn preflight(&self, headers: &HeaderMap) -> Response {
        let method_ok = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| self.rules.methods.iter().any(|a| a == m));
        let headers_ok = headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .all(|h| self.rules.headers.contains(&h));
        let origin = self.allowed_origin(headers).filter(|_| method_ok && headers_ok);
        let shown = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("-");
        println!("preflight origin={shown} allowed={}", origin.is_some());
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Some(origin) = origin {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            let join = |v: &[String]| HeaderValue::from_str(&v.join(",")).ok();
            if let Some(v) = join(&self.rules.methods) {
                h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
            }
            if let Some(v) = join(&self.rules.headers) {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.rules.max_age));
        }
        response
    }

    async fn forward(&self, method: Method, uri: &Uri, headers: HeaderMap, body: Bytes) -> Response {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = self.http.request(method, format!("{}{path}", self.upstream)).body(body);
        for (name, value) in &headers {
            if name != header::HOST && name != header::CONTENT_LENGTH {
                request = request.header(name, value);
            }
        }
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(_) => return (StatusCode::BAD_GATEWAY, "the function did not answer").into_response(),
        };
        let status = answer.status();
        let mut out = HeaderMap::new();
        for (name, value) in answer.headers() {
            // cargo lambda's own CORS headers (any origin) are not API Gateway's.
            if !name.as_str().starts_with("access-control-") && name != header::TRANSFER_ENCODING {
                out.insert(name, value.clone());
            }
        }
        if let Some(origin) = self.allowed_origin(&headers) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            out.insert(header::VARY, HeaderValue::from_static("origin"));
        }
        let body = answer.bytes().await.unwrap_or_default();
        (status, out, body).into_response()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::var("LISTEN").context("LISTEN")?;
    let template = std::env::var("TEMPLATE").unwrap_or_else(|_| "template.yaml".into());
    let front = Arc::new(Front {
        rules: local_stack::cors_from_template(std::path::Path::new(&template))?,
        origins: std::env::var("ALLOWED_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect(),
        upstream: std::env::var("UPSTREAM").context("UPSTREAM")?,
        http: reqwest::Client::new(),
    });
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let front = Arc::clone(&front);
        async move {
            if method == Method::OPTIONS {
                front.preflight(&headers)
            } else {
                front.forward(method, &uri, headers, body).await
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(&listen).await.context("bind")?;
    println!("function-url listening on {listen}");
    axum::serve(listener, app).await?;
    Ok(())
}
