//! Builds pinejs OData query strings by hand.
//!
//! pine parses the raw query, so structural characters (`$ ( ) , ; / : = &`)
//! must stay literal while string literals are escaped the way pinejs-client
//! does it: quotes doubled, then `encodeURIComponent`-style percent-encoding,
//! then wrapped in quotes. HTTP libraries' form encoding would turn `,` into
//! `%2C` and break the grammar, so the finished string is set verbatim with
//! [`Url::set_query`].

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

/// What `encodeURIComponent` leaves alone: `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// A string literal as pinejs-client writes it: `'` doubled, percent-encoded
/// like `encodeURIComponent`, wrapped in `'…'`.
pub(crate) fn string_literal(value: &str) -> String {
    let doubled = value.replace('\'', "''");
    format!("'{}'", utf8_percent_encode(&doubled, URI_COMPONENT))
}

/// `field eq n`.
pub(crate) fn eq(field: &str, n: u64) -> String {
    format!("{field} eq {n}")
}

/// `field eq 'text'`.
pub(crate) fn eq_str(field: &str, text: &str) -> String {
    format!("{field} eq {}", string_literal(text))
}

/// `field eq n` for one id, `field in (a,b,…)` for more. `ids` must not be
/// empty (callers skip the query instead).
pub(crate) fn in_ids(field: &str, ids: &[u64]) -> String {
    match ids {
        [one] => eq(field, *one),
        _ => {
            let mut out = format!("{field} in (");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // Writing to a String cannot fail.
                let _ = write!(out, "{id}");
            }
            out.push(')');
            out
        }
    }
}

/// `startswith(field,'prefix')`.
pub(crate) fn startswith(field: &str, prefix: &str) -> String {
    format!("startswith({field},{})", string_literal(prefix))
}

/// `path/any(var:predicate)`, a lambda over a navigation.
pub(crate) fn any(path: &str, var: &str, predicate: &str) -> String {
    format!("{path}/any({var}:{predicate})")
}

/// Joins terms with `and`; terms containing `or` are parenthesised.
pub(crate) fn and(terms: &[String]) -> String {
    join(terms, " and ")
}

/// Joins terms with `or`, each parenthesised when there are several.
pub(crate) fn or(terms: &[String]) -> String {
    join(terms, " or ")
}

fn join(terms: &[String], op: &str) -> String {
    if terms.len() == 1 {
        return terms[0].clone();
    }
    terms
        .iter()
        .map(|t| {
            if t.contains(" or ") || t.contains(" and ") {
                format!("({t})")
            } else {
                t.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(op)
}

/// One `$expand` entry with its nested options.
#[derive(Debug, Clone)]
pub(crate) struct Expand {
    navigation: &'static str,
    select: &'static [&'static str],
    expand: Vec<Expand>,
}

impl Expand {
    pub(crate) fn new(navigation: &'static str, select: &'static [&'static str]) -> Self {
        Expand {
            navigation,
            select,
            expand: Vec::new(),
        }
    }

    pub(crate) fn expand(mut self, inner: Expand) -> Self {
        self.expand.push(inner);
        self
    }

    fn render(&self, out: &mut String) {
        out.push_str(self.navigation);
        let mut options = Vec::new();
        if !self.select.is_empty() {
            options.push(format!("$select={}", self.select.join(",")));
        }
        if !self.expand.is_empty() {
            let mut inner = String::from("$expand=");
            render_list(&self.expand, &mut inner);
            options.push(inner);
        }
        if !options.is_empty() {
            out.push('(');
            out.push_str(&options.join(";"));
            out.push(')');
        }
    }
}

fn render_list(expands: &[Expand], out: &mut String) {
    for (i, e) in expands.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        e.render(out);
    }
}

/// The options of one GET, rendered in insertion order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    options: Vec<String>,
}

impl Query {
    pub(crate) fn new() -> Self {
        Query::default()
    }

    pub(crate) fn filter(mut self, expr: String) -> Self {
        self.options.push(format!("$filter={expr}"));
        self
    }

    pub(crate) fn select(mut self, fields: &[&str]) -> Self {
        self.options.push(format!("$select={}", fields.join(",")));
        self
    }

    pub(crate) fn expand(mut self, expands: &[Expand]) -> Self {
        let mut out = String::from("$expand=");
        render_list(expands, &mut out);
        self.options.push(out);
        self
    }

    pub(crate) fn orderby(mut self, order: &str) -> Self {
        self.options.push(format!("$orderby={order}"));
        self
    }

    /// The decoded query string (spaces and quotes not yet encoded).
    pub(crate) fn render(&self) -> String {
        self.options.join("&")
    }

    /// `{api}/v7/{resource}?{query}`. Like balena-sdk, the path of `api` is
    /// replaced, not extended. The URL layer percent-encodes spaces and
    /// quotes and nothing structural.
    pub(crate) fn url(&self, api: &Url, resource: &str) -> Url {
        let mut url = api.clone();
        url.set_path(&format!("/v7/{resource}"));
        url.set_fragment(None);
        let query = self.render();
        url.set_query((!query.is_empty()).then_some(query.as_str()));
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Url {
        Url::parse("https://api.balena-cloud.com/some/path/").unwrap()
    }

    #[test]
    fn string_literals_are_escaped_like_pinejs_client() {
        assert_eq!(string_literal("84d3d8"), "'84d3d8'");
        assert_eq!(string_literal("84d3d8f'x"), "'84d3d8f''x'");
        assert_eq!(string_literal("a+b"), "'a%2Bb'");
        assert_eq!(string_literal("100%"), "'100%25'");
        assert_eq!(string_literal("a b"), "'a%20b'");
        assert_eq!(string_literal("h\u{e9}"), "'h%C3%A9'");
        assert_eq!(string_literal("a,b/c(d)"), "'a%2Cb%2Fc(d)'");
        assert_eq!(string_literal("-_.!~*"), "'-_.!~*'");
        assert_eq!(string_literal("org/fleet&$x=1"), "'org%2Ffleet%26%24x%3D1'");
    }

    #[test]
    fn filters_compose() {
        assert_eq!(in_ids("id", &[900813]), "id eq 900813");
        assert_eq!(in_ids("id", &[900813, 900835]), "id in (900813,900835)");
        let either = or(&[eq("id", 1), startswith("commit", "ab'cd")]);
        assert_eq!(either, "id eq 1 or startswith(commit,'ab''cd')");
        assert_eq!(
            and(&[eq("version", 3), either]),
            "version eq 3 and (id eq 1 or startswith(commit,'ab''cd'))"
        );
        assert_eq!(
            any(
                "produces__image/release_image",
                "ri",
                &eq("ri/is_part_of__release", 7)
            ),
            "produces__image/release_image/any(ri:ri/is_part_of__release eq 7)"
        );
        assert_eq!(eq_str("slug", "org/app"), "slug eq 'org%2Fapp'");
    }

    #[test]
    fn nested_expands_render_with_semicolons() {
        let q = Query::new()
            .filter(in_ids("id", &[900813, 900835]))
            .select(&["id", "commit"])
            .expand(&[Expand::new("release_image", &["id"]).expand(
                Expand::new("image", &["id", "status"])
                    .expand(Expand::new("is_a_build_of__service", &["service_name"])),
            )]);
        assert_eq!(
            q.render(),
            "$filter=id in (900813,900835)&$select=id,commit&$expand=release_image($select=id;\
             $expand=image($select=id,status;$expand=is_a_build_of__service($select=service_name)))"
        );
    }

    #[test]
    fn urls_keep_structure_literal_and_encode_spaces_and_quotes() {
        let q = Query::new()
            .filter(and(&[
                eq("version", 3),
                or(&[eq("id", 1), startswith("commit", "84d3d8f'x+%\u{e9}")]),
            ]))
            .select(&["id", "commit"])
            .orderby("id desc");
        let url = q.url(&api(), "release");
        assert_eq!(
            url.as_str(),
            "https://api.balena-cloud.com/v7/release?$filter=version%20eq%203%20and%20\
             (id%20eq%201%20or%20startswith(commit,%2784d3d8f%27%27x%2B%25%C3%A9%27))\
             &$select=id,commit&$orderby=id%20desc"
        );
        // Nothing structural is percent-encoded.
        let query = url.query().unwrap();
        for bad in ["%2C", "%28", "%29", "%2F", "%24", "%3B", "+"] {
            assert!(!query.contains(bad), "{bad} in {query}");
        }
    }

    #[test]
    fn the_api_path_is_replaced() {
        let url = Query::new().url(&Url::parse("http://127.0.0.1:4000/x/").unwrap(), "delta");
        assert_eq!(url.as_str(), "http://127.0.0.1:4000/v7/delta");
    }
}
