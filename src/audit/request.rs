//! Where an HTTP request comes from, for its audit events: an axum
//! extractor both services use.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use super::event::{Source, source_address};

/// A user agent longer than this is cut: it is the client's to choose.
const MAX_USER_AGENT: usize = 256;

impl Source {
    /// The source of the request whose parts these are: its peer address
    /// (the server must run with connect info) and its `User-Agent`.
    pub fn of_request(parts: &Parts) -> Self {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| address.ip());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|agent| cut(agent, MAX_USER_AGENT));
        Source { address: source_address(peer), user_agent }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source::of_request(parts))
    }
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
