//! The web console: one page and its assets, compiled into the binary (`console/`), served
//! on the admin listener at `/` and `/console/…`.
//!
//! The page holds no data, so it loads without the token; every API call it makes sends
//! `Authorization: Bearer <token>`, typed once by the operator and kept in the tab's
//! `sessionStorage` (never in a URL or a cookie, so no other site can make the browser use it).
//!
//! Invariants:
//! - The page fetches nothing but these assets and `/api/…` on its own origin: no CDN, no
//!   font, no image from elsewhere (air-gapped sites). The `Content-Security-Policy` sent with
//!   every asset enforces it, and forbids inline script and `eval`.
//! - `console.js` puts API data into the DOM only as text (`textContent`, `append` of
//!   strings, `createElement`), never as markup: webhook payloads are hostile. The policy is
//!   the second wall, not the first.
//! - Each asset has a strong `ETag` (a digest of its bytes) and `Cache-Control: no-cache`: a
//!   browser revalidates with a cheap `304`, and never runs a stale script after an upgrade.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use sha2::{Digest, Sha256};

/// What the console's pages may load and do: only their own origin, no inline script or
/// style, no framing, no plugin, no form posted anywhere (the token form is handled in script).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the console.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file the console serves; `/` is the page.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("console/index.html"),
    },
    Asset {
        path: "/console/console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("console/console.js"),
    },
    Asset {
        path: "/console/console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("console/console.css"),
    },
    Asset {
        path: "/console/icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("console/icon.svg"),
    },
];

/// Each asset's `ETag`, in the order of [`ASSETS`]: the first 16 bytes of its SHA-256, so it
/// changes exactly when the file does, whatever the version number says.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.bytes);
            let tag = format!("\"{}\"", hex::encode(&digest[..16]));
            HeaderValue::from_str(&tag).expect("hex is a valid header value")
        })
        .collect()
});

/// The answer for `path` if it is one of the console's files; `None` leaves the request to
/// the API router. Needs no token: the files hold no data.
pub(super) fn serve(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response<Full<Bytes>>> {
    let index = ASSETS.iter().position(|a| a.path == path)?;
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let mut response = if method != Method::GET && method != Method::HEAD {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        response
    } else if matches(headers, etag) {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        // hyper leaves the body out of an answer to HEAD and keeps its length.
        let mut response = Response::new(Full::new(Bytes::from_static(asset.bytes)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        response
    };
    let out = response.headers_mut();
    out.insert(header::ETAG, etag.clone());
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    out.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    out.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    Some(response)
}

/// Whether `If-None-Match` names `etag` (or `*`): the browser's copy is current.
fn matches(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(etag) = etag.to_str().ok() else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, headers: &HeaderMap) -> Option<Response<Full<Bytes>>> {
        serve(&Method::GET, path, headers)
    }

    #[test]
    fn each_asset_is_served_with_its_type_and_the_security_headers() {
        for asset in ASSETS {
            let response = get(asset.path, &HeaderMap::new()).expect("an asset");
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.path);
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
            let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.starts_with("default-src 'none'"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
        }
        assert!(get("/console/nope.js", &HeaderMap::new()).is_none());
        assert!(get("/api/events", &HeaderMap::new()).is_none());
    }

    #[test]
    fn a_current_etag_gets_304_and_a_stale_one_the_file() {
        let first = get("/", &HeaderMap::new()).unwrap();
        let etag = first.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"stale\", {}", etag.to_str().unwrap())).unwrap(),
        );
        assert_eq!(
            get("/", &headers).unwrap().status(),
            StatusCode::NOT_MODIFIED
        );
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"stale\""));
        assert_eq!(get("/", &headers).unwrap().status(), StatusCode::OK);
        let tags: std::collections::HashSet<_> = ETAGS.iter().collect();
        assert_eq!(tags.len(), ASSETS.len(), "each file has its own tag");
    }

    #[test]
    fn other_methods_on_an_asset_are_405() {
        let response = serve(&Method::POST, "/", &HeaderMap::new()).unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
    }

    /// The page loads only its own files: no `http(s)://` or protocol-relative reference,
    /// no inline script or handler, and no `innerHTML`/`outerHTML`/`insertAdjacentHTML`/
    /// `document.write` anywhere in the script (data goes in as text only).
    #[test]
    fn the_page_references_nothing_external_and_the_script_never_writes_markup() {
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.bytes).expect("text assets");
            for needle in ["http://", "https://", "src=\"//", "href=\"//", "url("] {
                // The SVG's namespace is an identifier, not a fetch.
                let allowed = asset.path.ends_with(".svg") && needle == "http://";
                assert!(
                    allowed || !text.contains(needle),
                    "{} contains {needle}",
                    asset.path
                );
            }
        }
        let html = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        assert!(!html.contains("<script>"), "no inline script");
        assert!(
            !has_handler_attribute(html),
            "no inline event handler attribute"
        );
        assert!(!html.contains("style="), "no inline style");
        let js = std::str::from_utf8(ASSETS[1].bytes).unwrap();
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!js.contains(sink), "console.js uses {sink}");
        }
    }

    /// Whether `html` has an attribute such as ` onclick=`.
    fn has_handler_attribute(html: &str) -> bool {
        html.match_indices(" on").any(|(at, _)| {
            let rest = &html[at + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        })
    }

    #[test]
    fn the_console_stays_small() {
        let total: usize = ASSETS.iter().map(|a| a.bytes.len()).sum();
        assert!(total < 64 * 1024, "console assets are {total} bytes");
    }
}
