//! Which headers cross the proxy: hop-by-hop and credential headers never do.

use http::header::HeaderName;

use crate::client::codec::tokens;
use crate::raw_headers::RawHeaders;

/// The request id's name, as a constant for the header maps of the router's own answers (a
/// name from a string is parsed and hashed on every use).
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Hop-by-hop headers (RFC 9110 section 7.6.1), stripped in both directions (responses by
/// the upstream client, which hands back end-to-end headers only). Names are told apart by
/// length first, so most lines cost one comparison or none.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
    match name.len() {
        2 => is("te"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        16 => is("proxy-connection"),
        17 => is("transfer-encoding"),
        18 => is("proxy-authenticate"),
        19 => is("proxy-authorization"),
        _ => false,
    }
}

/// The client's credentials (the upstream gets the model's own key instead) and the headers
/// the router sets itself (`expect`: the router has read the whole body before it calls an
/// upstream; `accept-encoding`: captures read the answer as it is).
fn credential_or_replaced(name: &[u8]) -> bool {
    let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
    match name.len() {
        4 => is("host"),
        6 => is("cookie") || is("expect"),
        7 => is("api-key"),
        9 => is("x-api-key"),
        12 => is("x-request-id"),
        13 => is("authorization"),
        14 => is("content-length") || is("openai-project"),
        15 => is("accept-encoding"),
        19 => is("openai-organization"),
        _ => false,
    }
}

/// Whether a client header line may reach an upstream: not hop-by-hop, not a credential, not
/// one the router sets itself, not one of the router's own controls.
fn crosses(name: &[u8]) -> bool {
    const OWN: &[u8] = b"x-shadowroute-";
    let own = name.get(..OWN.len()).is_some_and(|p| p.eq_ignore_ascii_case(OWN));
    !(own || credential_or_replaced(name) || is_hop_by_hop(name))
}

/// The client's header lines an upstream may see. Only [`forwarded`] makes one, so the
/// upstream client cannot be handed a request's other lines (credentials, framing) by mistake.
#[derive(Debug, Clone, Default)]
pub struct Forwarded(RawHeaders);

impl Forwarded {
    pub fn lines(&self) -> &RawHeaders {
        &self.0
    }
}

/// The request's own lines (sharing its bytes, no map built) without the hop-by-hop ones, those
/// its `Connection` header lists, credentials, framing, and the ones the router sets.
pub fn forwarded(client: &RawHeaders) -> Forwarded {
    let listed: Vec<&[u8]> =
        client.iter().filter(|(n, _)| n.eq_ignore_ascii_case(b"connection")).flat_map(|(_, v)| tokens(v)).collect();
    Forwarded(client.filtered(|n| crosses(n) && !listed.iter().any(|l| l.eq_ignore_ascii_case(n))))
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
        let kept: Vec<(&[u8], &[u8])> = out.lines().iter().collect();
        let want: [(&[u8], &[u8]); 3] =
            [(b"x-custom", b"v"), (b"X-Custom", b"v"), (b"Content-Type", b"application/json")];
        assert_eq!(kept, want);
    }

    #[test]
    fn hop_by_hop_names_in_any_case() {
        let all = ["Connection", "Keep-Alive", "proxy-connection", "Proxy-Authenticate", "PROXY-AUTHORIZATION", "TE"];
        for name in all.into_iter().chain(["Trailer", "transfer-encoding", "UPGRADE"]) {
            assert!(is_hop_by_hop(name.as_bytes()), "{name}");
        }
        for name in ["content-type", "tee", "x-upgrade", "connection-x", "a-name-longer-than-twenty-bytes"] {
            assert!(!is_hop_by_hop(name.as_bytes()), "{name}");
        }
    }
}
