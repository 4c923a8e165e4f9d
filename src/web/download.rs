//! Files sent to a browser from pglab's data directory (snapshots,
//! exports): streamed in chunks, one byte range if asked for.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// `len` bytes of a file from where it stands, as a stream of 64 kB chunks.
fn chunks(file: tokio::fs::File, len: u64) -> Body {
    let stream = futures_util::stream::unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; (1 << 16).min(left as usize)];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), (file, left - n as u64)))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    Body::from_stream(stream)
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    /// Not a single byte range pglab reads: the whole file (as the
    /// standard says for a header a server does not take).
    Whole,
    /// The first and the last byte.
    Part(u64, u64),
    /// Outside the file: 416.
    Unsatisfiable,
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`.
fn range(value: &str, size: u64) -> Asked {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Asked::Whole;
    };
    let Some((a, b)) = spec.split_once('-').filter(|_| !spec.contains(',')) else {
        return Asked::Whole;
    };
    let parsed = match (a.trim(), b.trim()) {
        ("", n) => n
            .parse::<u64>()
            .ok()
            .map(|n| (size.saturating_sub(n), size.saturating_sub(1), n > 0)),
        (a, "") => a.parse().ok().map(|a| (a, size.saturating_sub(1), true)),
        (a, b) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => Some((a, b.min(size.saturating_sub(1)), true)),
            _ => None,
        },
    };
    match parsed {
        None => Asked::Whole,
        Some((first, last, ok)) if ok && size > 0 && first <= last && first < size => {
            Asked::Part(first, last)
        }
        Some(_) => Asked::Unsatisfiable,
    }
}

/// The file as an attachment named `name`, never cached, with `extra`
/// headers; a `Range` request gets that range (206) or 416.
pub async fn attachment(
    path: &Path,
    name: &str,
    request: &HeaderMap,
    extra: Vec<(header::HeaderName, String)>,
) -> std::io::Result<Response> {
    let mut file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    let mut headers = HeaderMap::new();
    let mut put = |k: header::HeaderName, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    };
    put(header::CONTENT_TYPE, "application/octet-stream".into());
    put(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{name}\""),
    );
    put(header::CACHE_CONTROL, "no-store".into());
    put(header::ACCEPT_RANGES, "bytes".into());
    for (k, v) in extra {
        put(k, v);
    }
    let asked = request
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Asked::Whole, |v| range(v, size));
    let (first, last) = match asked {
        Asked::Whole => {
            put(header::CONTENT_LENGTH, size.to_string());
            return Ok((StatusCode::OK, headers, chunks(file, size)).into_response());
        }
        Asked::Unsatisfiable => {
            put(header::CONTENT_RANGE, format!("bytes */{size}"));
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response());
        }
        Asked::Part(first, last) => (first, last),
    };
    file.seek(std::io::SeekFrom::Start(first)).await?;
    let len = last - first + 1;
    put(
        header::CONTENT_RANGE,
        format!("bytes {first}-{last}/{size}"),
    );
    put(header::CONTENT_LENGTH, len.to_string());
    Ok((StatusCode::PARTIAL_CONTENT, headers, chunks(file, len)).into_response())
}

#[cfg(test)]
mod tests {
    use super::{range, Asked};

    #[test]
    fn ranges() {
        assert_eq!(range("bytes=0-9", 100), Asked::Part(0, 9));
        assert_eq!(range("bytes=90-", 100), Asked::Part(90, 99));
        assert_eq!(range("bytes=-10", 100), Asked::Part(90, 99));
        assert_eq!(range("bytes=95-200", 100), Asked::Part(95, 99));
        assert_eq!(range("bytes=100-", 100), Asked::Unsatisfiable);
        assert_eq!(range("bytes=-0", 100), Asked::Unsatisfiable);
        assert_eq!(range("bytes=5-1", 100), Asked::Whole);
        assert_eq!(range("bytes=0-1,5-6", 100), Asked::Whole);
        assert_eq!(range("items=0-1", 100), Asked::Whole);
        assert_eq!(range("bytes=x-1", 100), Asked::Whole);
    }
}
