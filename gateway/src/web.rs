//! The web client's files, served by the gateway itself (one origin, the same TLS, no second
//! server): `GET` and `HEAD` only, from the folder `gateway.web_root`, with a strict
//! Content-Security-Policy and the usual security headers on every answer.
//!
//! On the main port the files load only with a device certificate, as every call; the sign-in
//! port serves them too (they hold no data, only the code that offers sign-in and enrolment to
//! a device without a certificate yet), and its gRPC calls stay limited to sign-in.
//!
//! Paths are checked before the file system is touched: only `[A-Za-z0-9._-]` components, none
//! starting with a dot (no `..`, no hidden file). A path without an extension that names no file
//! is a route of the client and gets `index.html`. A file `x.br` or `x.gz` next to `x` is sent
//! instead when the browser accepts that encoding.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use tonic::body::Body;

/// Largest file served (the client's bundles are far smaller).
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// What the client may load and where it may connect: its own origin only, no inline script or
/// style, no plugin, no framing; camera and microphone streams and blobs for video and photos.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; \
     connect-src 'self'; font-src 'self'; worker-src 'self'; manifest-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The web client's folder, if configured.
#[derive(Debug, Clone, Default)]
pub struct WebRoot {
    dir: Option<PathBuf>,
}

impl WebRoot {
    pub fn new(dir: Option<PathBuf>) -> WebRoot {
        WebRoot { dir }
    }

    /// Whether the gateway answers this method with files (gRPC and gRPC-Web are POSTs).
    pub fn handles(method: &Method) -> bool {
        method == Method::GET || method == Method::HEAD
    }

    /// The answer to `GET`/`HEAD` of `path`.
    pub async fn answer(&self, method: &Method, path: &str, request: &HeaderMap) -> Response<Body> {
        let Some(dir) = &self.dir else {
            return plain(
                StatusCode::NOT_FOUND,
                "Le client web n'est pas installé sur cette passerelle.",
            );
        };
        let Some(relative) = checked(path) else {
            return plain(StatusCode::NOT_FOUND, "Page introuvable.");
        };
        let mut file = dir.join(&relative);
        let is_route = relative.extension().is_none();
        if relative.as_os_str().is_empty() || (is_route && !is_file(&file).await) {
            file = dir.join("index.html");
        }
        let (bytes, encoding) = match read(&file, accepted(request)).await {
            Some(found) => found,
            None => return plain(StatusCode::NOT_FOUND, "Page introuvable."),
        };
        let mut response = Response::new(if method == Method::HEAD {
            Body::empty()
        } else {
            Body::new(http_body_util::Full::new(bytes.clone()))
        });
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, content_type(&file));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        if let Some(encoding) = encoding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        // Bundles are named by their content: kept a year. The page itself: always checked.
        let immutable = relative.starts_with("assets");
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if immutable {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            }),
        );
        secure(headers);
        response
    }
}

/// The security headers every answer of the web client carries.
pub fn secure(headers: &mut HeaderMap) {
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("strict-transport-security", "max-age=63072000"),
        (
            "permissions-policy",
            "camera=(self), microphone=(self), geolocation=(), payment=(), usb=()",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// `path` as a relative path inside the web root, or `None` when it could leave it or name
/// something hidden.
fn checked(path: &str) -> Option<PathBuf> {
    let mut relative = PathBuf::new();
    for component in path.split('/').filter(|c| !c.is_empty()) {
        let allowed = component
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !allowed || component.starts_with('.') || component.len() > 128 {
            return None;
        }
        relative.push(component);
    }
    (relative.components().count() <= 8).then_some(relative)
}

async fn is_file(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file())
}

/// The encodings the browser accepts, best first.
fn accepted(request: &HeaderMap) -> Vec<&'static str> {
    let accept = request
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let has = |name: &str| {
        accept
            .split(',')
            .any(|part| part.split(';').next().is_some_and(|e| e.trim() == name))
    };
    [("br", has("br")), ("gzip", has("gzip"))]
        .into_iter()
        .filter_map(|(name, ok)| ok.then_some(name))
        .collect()
}

/// The file, or its precompressed form the browser accepts; `None` when missing or too large.
async fn read(file: &Path, encodings: Vec<&'static str>) -> Option<(Bytes, Option<&'static str>)> {
    for encoding in encodings {
        let suffix = if encoding == "br" { "br" } else { "gz" };
        let mut name = file.as_os_str().to_owned();
        name.push(".");
        name.push(suffix);
        if let Some(bytes) = read_bounded(Path::new(&name)).await {
            return Some((bytes, Some(encoding)));
        }
    }
    read_bounded(file).await.map(|bytes| (bytes, None))
}

async fn read_bounded(path: &Path) -> Option<Bytes> {
    let metadata = tokio::fs::metadata(path).await.ok()?;
    if !metadata.is_file() || metadata.len() > MAX_FILE_BYTES {
        return None;
    }
    tokio::fs::read(path).await.ok().map(Bytes::from)
}

fn content_type(file: &Path) -> HeaderValue {
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    HeaderValue::from_static(match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    })
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(http_body_util::Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(headers);
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[test]
    fn only_plain_names_inside_the_root_pass() {
        assert_eq!(checked("/"), Some(PathBuf::new()));
        assert_eq!(
            checked("/assets/index-3f2a.js"),
            Some(PathBuf::from("assets/index-3f2a.js"))
        );
        assert_eq!(
            checked("/patients/123"),
            Some(PathBuf::from("patients/123"))
        );
        for hostile in [
            "/../etc/passwd",
            "/assets/../../secret",
            "/.env",
            "/assets/.git/config",
            "/a%2e%2e/b",
            "/x\\..\\y",
            "/é",
        ] {
            assert_eq!(checked(hostile), None, "{hostile}");
        }
    }

    #[tokio::test]
    async fn files_routes_encodings_and_headers() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("index.html"),
            "<!doctype html><title>T</title>",
        )
        .expect("index");
        std::fs::create_dir(dir.path().join("assets")).expect("assets");
        std::fs::write(dir.path().join("assets/app.js"), "console.log(1)").expect("js");
        std::fs::write(dir.path().join("assets/app.js.gz"), "GZ").expect("gz");
        std::fs::write(dir.path().join(".secret"), "no").expect("hidden");
        let root = WebRoot::new(Some(dir.path().to_owned()));
        let get = |path: &'static str, encoding: Option<&'static str>| {
            let root = root.clone();
            async move {
                let mut headers = HeaderMap::new();
                if let Some(encoding) = encoding {
                    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(encoding));
                }
                let response = root.answer(&Method::GET, path, &headers).await;
                let (parts, body) = response.into_parts();
                let bytes = body.collect().await.expect("body").to_bytes();
                (parts.status, parts.headers, bytes)
            }
        };
        let (status, headers, body) = get("/", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with(b"<!doctype html>"));
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let (_, _, body) = get("/patients/42", None).await;
        assert!(body.starts_with(b"<!doctype html>"), "a client route");
        let (status, headers, body) = get("/assets/app.js", Some("gzip, deflate, br")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.as_ref(), b"GZ");
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        assert!(
            headers[header::CACHE_CONTROL]
                .to_str()
                .expect("ascii")
                .contains("immutable")
        );
        let (_, headers, body) = get("/assets/app.js", None).await;
        assert_eq!(body.as_ref(), b"console.log(1)");
        assert!(!headers.contains_key(header::CONTENT_ENCODING));
        let (status, _, _) = get("/assets/missing.js", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, headers, _) = get("/.secret", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(headers.contains_key("content-security-policy"));

        let none = WebRoot::new(None);
        let response = none.answer(&Method::GET, "/", &HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
