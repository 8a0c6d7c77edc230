//! The parser on the URLs pinejs accepts and rejects: spaces and quotes,
//! literals, precedence, lambdas, dates, encoded structure and depth limits.

use super::*;

fn path(names: &[&str]) -> Expr {
    Expr::Path(PropertyPath {
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        count: None,
    })
}

fn text(s: &str) -> Expr {
    Expr::Literal(Literal::Text(s.to_owned()))
}

fn int(n: i64) -> Expr {
    Expr::Literal(Literal::Integer(n))
}

fn bin(op: Operator, a: Expr, b: Expr) -> Expr {
    Expr::Binary(op, Box::new(a), Box::new(b))
}

fn filter(query: &str) -> PResult<Expr> {
    parse_query(query).map(|options| options.filter.expect("the query has a filter"))
}

#[test]
fn paths_with_keys_and_counts() {
    assert_eq!(
        parse_path("release(900813)/$count"),
        Ok(ResourcePath {
            resource: "release".into(),
            key: Some(Literal::Integer(900813)),
            count: true
        })
    );
    assert_eq!(
        parse_path("release('x')").map(|p| p.key),
        Ok(Some(Literal::Text("x".into())))
    );
    assert_eq!(
        parse_path("release(id=5)").map(|p| p.key),
        Ok(Some(Literal::Integer(5)))
    );
    for bad in [
        "release(abc)",
        "release%281%29",
        "release(1",
        "",
        "release/%24count",
        "release/",
    ] {
        assert_eq!(parse_path(bad), Err(ParseError::Malformed), "{bad}");
    }
}

#[test]
fn spaces_have_three_forms_and_apostrophes_two() {
    let expected = bin(Operator::Eq, path(&["status"]), text("success"));
    for query in [
        "$filter=status eq 'success'",
        "$filter=status%20eq%20%27success%27",
        "$filter=status+eq+'success'",
        "%24filter=status eq %27success'",
    ] {
        assert_eq!(filter(query), Ok(expected.clone()), "{query}");
    }
}

#[test]
fn string_literals_decode_escapes_quotes_and_plus() {
    assert_eq!(
        filter("$filter=a eq 'x''y'"),
        Ok(bin(Operator::Eq, path(&["a"]), text("x'y")))
    );
    assert_eq!(
        filter("$filter=a eq %27x%27%27y%27"),
        Ok(bin(Operator::Eq, path(&["a"]), text("x'y")))
    );
    assert_eq!(
        filter("$filter=a eq 'a+b%2Bc%2C%28'"),
        Ok(bin(Operator::Eq, path(&["a"]), text("a b+c,(")))
    );
    assert_eq!(
        filter("$filter=a eq 'caf%C3%A9&x'"),
        Ok(bin(Operator::Eq, path(&["a"]), text("café&x")))
    );
    assert_eq!(filter("$filter=a eq 'bad%zz'"), Err(ParseError::Malformed));
    assert_eq!(filter("$filter=a eq 'open"), Err(ParseError::Malformed));
}

#[test]
fn and_and_or_share_one_precedence_level() {
    let a = bin(Operator::Eq, path(&["a"]), int(1));
    let b = bin(Operator::Eq, path(&["b"]), int(2));
    let c = bin(Operator::Eq, path(&["c"]), int(3));
    assert_eq!(
        filter("$filter=a eq 1 or b eq 2 and c eq 3"),
        Ok(bin(
            Operator::And,
            bin(Operator::Or, a.clone(), b.clone()),
            c.clone()
        ))
    );
    assert_eq!(
        filter("$filter=a eq 1 or (b eq 2 and c eq 3)"),
        Ok(bin(Operator::Or, a, bin(Operator::And, b, c)))
    );
}

#[test]
fn in_lists_lambdas_calls_and_not() {
    assert_eq!(
        filter("$filter=id in (1, 2,3)"),
        Ok(Expr::In(
            Box::new(path(&["id"])),
            vec![int(1), int(2), int(3)]
        ))
    );
    assert_eq!(filter("$filter=id in (1 ,2)"), Err(ParseError::Malformed));
    assert_eq!(
        filter("$filter=a/b/any(x:x/c eq -4)"),
        Ok(Expr::Lambda {
            names: vec!["a".into(), "b".into()],
            kind: LambdaKind::Any,
            variable: "x".into(),
            body: Box::new(bin(Operator::Eq, path(&["x", "c"]), int(-4))),
        })
    );
    assert_eq!(
        filter("$filter=not startswith(commit,'84d')"),
        Ok(Expr::Not(Box::new(Expr::Call(
            "startswith".into(),
            vec![path(&["commit"]), text("84d")]
        ))))
    );
    assert_eq!(
        filter("$filter=startswith(commit)"),
        Err(ParseError::Malformed)
    );
    assert_eq!(
        filter("$filter=nav/$count($filter=a eq 1) gt 0"),
        Ok(bin(
            Operator::Gt,
            Expr::Path(PropertyPath {
                names: vec!["nav".into()],
                count: Some(Some(Box::new(bin(Operator::Eq, path(&["a"]), int(1)))))
            }),
            int(0)
        ))
    );
}

#[test]
fn datetime_literals_are_checked() {
    let at: Timestamp = "2026-11-25T18:57:48.621Z".parse().unwrap();
    assert_eq!(
        filter("$filter=t gt datetime'2026-11-25T18:57:48.621Z'"),
        Ok(bin(
            Operator::Gt,
            path(&["t"]),
            Expr::Literal(Literal::DateTime(at))
        ))
    );
    assert_eq!(
        filter("$filter=t gt datetime%272026-11-25T18:57:48.621Z%27"),
        Ok(bin(
            Operator::Gt,
            path(&["t"]),
            Expr::Literal(Literal::DateTime(at))
        ))
    );
    assert_eq!(
        filter("$filter=t gt datetime'yesterday'"),
        Err(ParseError::Malformed)
    );
}

#[test]
fn encoded_structure_is_malformed() {
    for query in [
        "$select=id%2Ccommit",
        "$filter=startswith%28commit,'a')",
        "$filter=startswith(commit,'a'%29",
        "$filter=a%2Fb eq 1",
        "$expand=image%28$select=id)",
        "$expand=image($select=id%3Bcommit)",
        "$orderby=id%20up",
        "$filter=a eq 1&",
        "$top=x",
        "$unknown=1",
        "%24unknown=1",
        "$filter=",
        "$filter=a eq",
        "$filter=a/any(x: x/b eq 1)",
    ] {
        assert_eq!(parse_query(query), Err(ParseError::Malformed), "{query}");
    }
}

#[test]
fn deep_nesting_is_refused_without_overflowing() {
    let deep = format!("$filter={}a eq 1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(matches!(
        parse_query(&deep),
        Err(ParseError::Unsupported(_))
    ));
    let nots = format!("$filter={}a", "not ".repeat(10_000));
    assert!(matches!(
        parse_query(&nots),
        Err(ParseError::Unsupported(_))
    ));
    let expand = format!(
        "$expand={}a{}",
        "a($expand=".repeat(5_000),
        ")".repeat(5_000)
    );
    assert!(matches!(
        parse_query(&expand),
        Err(ParseError::Unsupported(_))
    ));
    let in_list = format!(
        "$filter=a in ({}1{})",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert!(matches!(
        parse_query(&in_list),
        Err(ParseError::Unsupported(_))
    ));
    let chain = vec!["a eq 1"; 1_000].join(" and ");
    assert!(matches!(
        parse_query(&format!("$filter={chain}")),
        Err(ParseError::Unsupported(_))
    ));
    let fine = format!("$filter={}a eq 1{}", "(".repeat(20), ")".repeat(20));
    assert!(parse_query(&fine).is_ok());
}

#[test]
fn options_nest_and_repeat_is_refused() {
    let options = parse_query(
        "$expand=a($select=x,y;$filter=x eq 1;$expand=b/$count,c($orderby=z asc,w;$top=2;$skip=1)),d&$top=5&apikey=abc",
    )
    .unwrap();
    let expand = options.expand.unwrap();
    assert_eq!(expand.len(), 2);
    assert_eq!(expand[0].name, "a");
    let nested = expand[0].options.expand.as_ref().unwrap();
    assert!(nested[0].count);
    assert_eq!(nested[1].options.top, Some(2));
    assert_eq!(nested[1].options.skip, Some(1));
    let order = nested[1].options.orderby.as_ref().unwrap();
    assert!(!order[0].descending);
    assert!(
        order[1].descending,
        "no direction reads as `desc`, as in odata-parser"
    );
    assert_eq!(options.top, Some(5));
    assert!(matches!(
        parse_query("$top=1&$top=2"),
        Err(ParseError::Unsupported(_))
    ));
}
