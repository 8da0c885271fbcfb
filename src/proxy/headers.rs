//! Which headers cross the proxy: hop-by-hop and credential headers never do.

use http::header::HeaderName;

use crate::client::codec::tokens;
use crate::raw_headers::RawHeaders;

/// The router's own headers, as constants: a name from a string is parsed and hashed on every use.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_SHADOWROUTE_MODEL: HeaderName = HeaderName::from_static("x-shadowroute-model");
pub const X_SHADOWROUTE_MODALITY: HeaderName = HeaderName::from_static("x-shadowroute-modality");

/// `name` in lower case, if it is short enough to be one of the names matched below (the
/// longest is 19 bytes).
fn lowered<'a>(name: &[u8], buf: &'a mut [u8; 20]) -> Option<&'a [u8]> {
    let out = buf.get_mut(..name.len())?;
    out.copy_from_slice(name);
    out.make_ascii_lowercase();
    Some(out)
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1), stripped in both directions (responses by
/// the upstream client, which hands back end-to-end headers only).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    lowered(name, &mut [0; 20]).is_some_and(hop_by_hop)
}

fn hop_by_hop(lower: &[u8]) -> bool {
    matches!(
        lower,
        b"connection"
            | b"keep-alive"
            | b"proxy-connection"
            | b"proxy-authenticate"
            | b"proxy-authorization"
            | b"te"
            | b"trailer"
            | b"transfer-encoding"
            | b"upgrade"
    )
}

/// Whether a client header line may reach an upstream: not hop-by-hop, not a credential (the
/// upstream gets the model's own key instead), not one the router sets itself (`expect`: the
/// router has read the whole body before it calls an upstream; `accept-encoding`: captures
/// read the answer as it is), not one of the router's own controls.
fn crosses(name: &[u8]) -> bool {
    const OWN: &[u8] = b"x-shadowroute-";
    if name.get(..OWN.len()).is_some_and(|p| p.eq_ignore_ascii_case(OWN)) {
        return false;
    }
    let mut buf = [0; 20];
    let Some(lower) = lowered(name, &mut buf) else { return true };
    let credential = matches!(
        lower,
        b"authorization" | b"api-key" | b"x-api-key" | b"openai-organization" | b"openai-project" | b"cookie"
    );
    let replaced = matches!(lower, b"host" | b"content-length" | b"accept-encoding" | b"x-request-id" | b"expect");
    !(credential || replaced || hop_by_hop(lower))
}

/// The client's header lines an upstream may see: the request's own lines (sharing its bytes,
/// no map built) without the hop-by-hop ones, those its `Connection` header lists, credentials,
/// framing, and the ones the router sets.
pub fn forwarded(client: &RawHeaders) -> RawHeaders {
    let listed: Vec<&[u8]> =
        client.iter().filter(|(n, _)| n.eq_ignore_ascii_case(b"connection")).flat_map(|(_, v)| tokens(v)).collect();
    let mut out = client.clone();
    out.retain(|n| crosses(n) && !listed.iter().any(|l| l.eq_ignore_ascii_case(n)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_hop_by_hop_never_cross() {
        let mut lines = vec![("Connection", "X-Drop-Me, keep-alive")];
        for name in [
            "Authorization",
            "api-key",
            "X-API-Key",
            "openai-organization",
            "OpenAI-Project",
            "cookie",
            "te",
            "Upgrade",
            "x-custom",
            "x-drop-me",
            "X-Shadowroute-Modality",
            "accept-encoding",
            "Content-Length",
            "Transfer-Encoding",
            "Expect",
            "Host",
            "x-request-id",
            "X-Custom",
            "Proxy-Authorization",
            "Keep-Alive",
        ] {
            lines.push((name, "v"));
        }
        lines.push(("Content-Type", "application/json"));
        let out = forwarded(&RawHeaders::from_pairs(lines));
        let kept: Vec<(&[u8], &[u8])> = out.iter().collect();
        let want: [(&[u8], &[u8]); 3] =
            [(b"x-custom", b"v"), (b"X-Custom", b"v"), (b"Content-Type", b"application/json")];
        assert_eq!(kept, want);
    }

    #[test]
    fn hop_by_hop_names_in_any_case() {
        for name in ["Connection", "TE", "transfer-encoding", "Proxy-Authenticate", "UPGRADE"] {
            assert!(is_hop_by_hop(name.as_bytes()), "{name}");
        }
        for name in ["content-type", "tee", "x-upgrade", "connection-x", "a-name-longer-than-twenty-bytes"] {
            assert!(!is_hop_by_hop(name.as_bytes()), "{name}");
        }
    }
}
