//! Small JSON answers: `{"id": …}` for accepted events and `{"error": …}` for refusals.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use uuid::Uuid;

/// `{"id": "<uuid>"}`, plus `"duplicate": true` for a re-sent delivery.
pub fn json_id(status: StatusCode, id: Uuid, duplicate: bool) -> Response<Full<Bytes>> {
    let mut buf = Uuid::encode_buffer();
    let id = id.hyphenated().encode_lower(&mut buf);
    let body = if duplicate {
        format!("{{\"id\":\"{id}\",\"duplicate\":true}}")
    } else {
        format!("{{\"id\":\"{id}\"}}")
    };
    json(status, body)
}

/// `{"error": "<message>"}`.
pub fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    json(status, body)
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
