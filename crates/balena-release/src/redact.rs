//! Keeping secrets out of messages: URLs lose their user info and the values
//! of query parameters that may hold credentials, in one place, before they
//! reach an error, a log line or an event.

use url::Url;

/// A URL fit for a transport error: scheme, host, port and path, without
/// user info or query.
pub(crate) fn short_url(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    redact_url(&url)
}

/// Removes URL user info from free text (reqwest error messages).
pub fn redact_text(text: &str) -> String {
    text.split(' ')
        .map(
            |word| match Url::parse(word.trim_matches(|c| c == '(' || c == ')')) {
                Ok(url) if !url.username().is_empty() || url.password().is_some() => word.replace(
                    word.trim_matches(|c| c == '(' || c == ')'),
                    &redact_url(&url),
                ),
                _ => word.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// A URL fit for messages: no user info, and the values of query parameters
/// that could hold secrets replaced.
pub fn redact_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if let Some(query) = url.query() {
        let cleaned: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_key(key) => format!("{key}=REDACTED"),
                _ => pair.to_owned(),
            })
            .collect();
        url.set_query(Some(&cleaned.join("&")));
    }
    url.to_string()
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "apikey",
        "api_key",
        "token",
        "access_token",
        "password",
        "secret",
    ]
    .iter()
    .any(|k| key == *k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials() {
        let url = Url::parse("https://user:pw@api.example/v7/x?apikey=s3cret&$select=id").unwrap();
        let shown = redact_url(&url);
        assert_eq!(shown, "https://api.example/v7/x?apikey=REDACTED&$select=id");
        assert!(!redact_text(&format!("error sending request for url ({url})")).contains("pw"));
    }

    #[test]
    fn transport_errors_show_host_and_path_only() {
        let url = Url::parse("https://u:p@api.example/v7/release?$filter=id%20eq%201#x").unwrap();
        assert_eq!(short_url(&url), "https://api.example/v7/release");
    }
}
