//! Which headers cross the proxy: hop-by-hop and credential headers never do.

use http::header::{self, HeaderMap, HeaderName};

/// Hop-by-hop headers (RFC 9110 section 7.6.1), stripped in both directions.
const HOP_BY_HOP: &[&str] = &[
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

/// Removes hop-by-hop headers, including those the `Connection` header names. One pass over
/// the names present (usually none or two), instead of a lookup per hop-by-hop name.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = {
        let listed = connection_listed(headers);
        headers
            .keys()
            .filter(|n| HOP_BY_HOP.contains(&n.as_str()) || listed.iter().any(|l| l.eq_ignore_ascii_case(n.as_str())))
            .cloned()
            .collect()
    };
    for name in doomed {
        headers.remove(name);
    }
}

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
