//! Which headers cross the proxy: hop-by-hop and credential headers never do.

use http::header::{self, HeaderMap, HeaderName};

/// The router's own headers, as constants: a name from a string is parsed and hashed on every use.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_SHADOWROUTE_MODEL: HeaderName = HeaderName::from_static("x-shadowroute-model");
pub const X_SHADOWROUTE_MODALITY: HeaderName = HeaderName::from_static("x-shadowroute-modality");
pub const X_SHADOWROUTE_SHADOW: HeaderName = HeaderName::from_static("x-shadowroute-shadow");

/// Hop-by-hop headers (RFC 9110 section 7.6.1), stripped in both directions (responses by
/// the upstream client, which hands back end-to-end headers only).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The client's credentials; the upstream gets the model's own key instead.
const CREDENTIALS: &[&str] =
    &["authorization", "api-key", "x-api-key", "openai-organization", "openai-project", "cookie"];

/// Headers the router sets itself on the upstream request.
const REPLACED: &[&str] = &["host", "content-length", "accept-encoding", "x-request-id"];

/// The header names a `Connection` header lists (hop-by-hop for this connection only).
fn connection_listed(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect()
}

/// The client's headers that may be forwarded to the chosen upstream: a new map with only
/// those, rather than a copy of everything minus the rest.
pub fn upstream_request_headers(client: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(client);
    let mut out = HeaderMap::with_capacity(client.len());
    for (name, value) in client {
        let n = name.as_str();
        let dropped = HOP_BY_HOP.contains(&n)
            || CREDENTIALS.contains(&n)
            || REPLACED.contains(&n)
            // The router's own controls are for the router.
            || n.starts_with("x-shadowroute-")
            || listed.iter().any(|l| l.eq_ignore_ascii_case(n));
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn credentials_and_hop_by_hop_never_cross() {
        let mut h = HeaderMap::new();
        for name in [
            "authorization",
            "api-key",
            "x-api-key",
            "openai-organization",
            "openai-project",
            "cookie",
            "te",
            "upgrade",
            "x-custom",
            "x-drop-me",
            "x-shadowroute-modality",
            "accept-encoding",
        ] {
            h.insert(HeaderName::from_static(name), HeaderValue::from_static("v"));
        }
        h.insert(header::CONNECTION, HeaderValue::from_static("x-drop-me, keep-alive"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let out = upstream_request_headers(&h);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(out.contains_key("x-custom"));
        assert!(out.contains_key(header::CONTENT_TYPE));
    }
}
