//! Finding the releases the user named among the rows the release query
//! returned: ids and commit prefixes, ambiguity narrowed by the other
//! release's fleet, and the checks that both releases can be compared. Pure.

use crate::error::Error;
use crate::reference::ReleaseRef;
use crate::wire::Release;

/// Finds the release named by `r` among `rows`. For an ambiguous commit
/// prefix, `scope` (the other release's application) narrows the matches.
pub(crate) fn resolve<'a>(
    rows: &'a [Release],
    r: &ReleaseRef,
    scope: Option<u64>,
) -> Result<&'a Release, Error> {
    let matches: Vec<&Release> = match r {
        ReleaseRef::Id(id) => rows.iter().filter(|row| row.summary.id == *id).collect(),
        ReleaseRef::Commit(_) => rows
            .iter()
            .filter(|row| r.matches_commit(&row.summary.commit))
            .collect(),
    };
    let successful: Vec<&Release> = matches
        .iter()
        .copied()
        .filter(|row| row.status == "success")
        .collect();
    match successful.as_slice() {
        [one] => Ok(one),
        [] => match matches.iter().max_by_key(|row| row.summary.id) {
            None => Err(Error::ReleaseNotFound {
                reference: r.clone(),
            }),
            Some(row) => Err(Error::ReleaseNotSuccessful {
                reference: r.clone(),
                id: row.summary.id,
                status: row.status.clone(),
            }),
        },
        many => {
            let scoped: Vec<&Release> = match scope {
                Some(app) => many
                    .iter()
                    .copied()
                    .filter(|row| row.application == app)
                    .collect(),
                None => Vec::new(),
            };
            if let [one] = scoped.as_slice() {
                return Ok(one);
            }
            let shown = if scoped.is_empty() {
                many.to_vec()
            } else {
                scoped
            };
            let mut candidates: Vec<_> = shown.iter().map(|row| row.summary.clone()).collect();
            candidates.sort_by_key(|c| c.id);
            Err(Error::ReleaseAmbiguous {
                reference: r.clone(),
                candidates,
            })
        }
    }
}

/// Resolves both references, scoping an ambiguous commit prefix to the
/// application of the other side when that side is unique.
pub(crate) fn resolve_both<'a>(
    rows: &'a [Release],
    from: &ReleaseRef,
    to: &ReleaseRef,
) -> Result<(&'a Release, &'a Release), Error> {
    let source = resolve(rows, from, None);
    let target = resolve(rows, to, None);
    let (source, target) = match (source, target) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(Error::ReleaseAmbiguous { .. }), Ok(t)) => {
            (resolve(rows, from, Some(t.application))?, t)
        }
        (Ok(s), Err(Error::ReleaseAmbiguous { .. })) => {
            (s, resolve(rows, to, Some(s.application))?)
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    if source.application != target.application {
        return Err(Error::DifferentApplications {
            from: source.summary.id,
            from_application: source.application,
            to: target.summary.id,
            to_application: target.application,
        });
    }
    Ok((source, target))
}

/// Refuses a release with an image that did not build successfully.
pub(crate) fn check_images(release: &Release) -> Result<(), Error> {
    match release.images.iter().find(|i| i.status != "success") {
        None => Ok(()),
        Some(image) => Err(Error::ImageNotReady {
            release: release.summary.id,
            service: image.service_name.clone(),
            image: image.info.id,
            status: image.status.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::{image, release};

    fn commit(s: &str) -> ReleaseRef {
        ReleaseRef::Commit(s.into())
    }

    fn with(mut r: Release, commit: &str, status: &str, app: u64) -> Release {
        r.summary.commit = commit.into();
        r.status = status.into();
        r.application = app;
        r
    }

    fn rows() -> Vec<Release> {
        vec![
            with(release(1, &[]), "84d3d8f4", "success", 1),
            with(release(2, &[]), "b2cf2db7aa", "success", 1),
            with(release(3, &[]), "b2cf2db7bb", "success", 2),
            with(release(4, &[]), "deadbeef", "failed", 1),
            with(release(5, &[]), "deadbeef01", "running", 1),
        ]
    }

    #[test]
    fn resolving_ids_and_prefixes() {
        let rows = rows();
        assert_eq!(
            resolve(&rows, &ReleaseRef::Id(1), None).unwrap().summary.id,
            1
        );
        assert_eq!(
            resolve(&rows, &commit("84d3d8"), None).unwrap().summary.id,
            1
        );
        assert!(matches!(
            resolve(&rows, &ReleaseRef::Id(9), None),
            Err(Error::ReleaseNotFound { .. })
        ));
        assert!(matches!(
            resolve(&rows, &commit("aaaaaa"), None),
            Err(Error::ReleaseNotFound { .. })
        ));
        match resolve(&rows, &ReleaseRef::Id(4), None) {
            Err(Error::ReleaseNotSuccessful { id: 4, status, .. }) => assert_eq!(status, "failed"),
            other => panic!("{other:?}"),
        }
        // Newest match reported when no match succeeded.
        match resolve(&rows, &commit("deadbe"), None) {
            Err(Error::ReleaseNotSuccessful { id: 5, status, .. }) => assert_eq!(status, "running"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ambiguous_prefixes_narrow_to_the_other_side() {
        let rows = rows();
        match resolve(&rows, &commit("b2cf2db7"), None) {
            Err(Error::ReleaseAmbiguous { candidates, .. }) => {
                assert_eq!(candidates.iter().map(|c| c.id).collect::<Vec<_>>(), [2, 3]);
            }
            other => panic!("{other:?}"),
        }
        let (s, t) = resolve_both(&rows, &ReleaseRef::Id(1), &commit("b2cf2db7")).unwrap();
        assert_eq!((s.summary.id, t.summary.id), (1, 2));
        let (s, t) = resolve_both(&rows, &commit("b2cf2db7"), &commit("84d3d8")).unwrap();
        assert_eq!((s.summary.id, t.summary.id), (2, 1));
    }

    #[test]
    fn releases_of_different_fleets_are_refused() {
        let rows = rows();
        match resolve_both(&rows, &ReleaseRef::Id(1), &ReleaseRef::Id(3)) {
            Err(Error::DifferentApplications {
                from_application: 1,
                to_application: 2,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn images_must_have_built() {
        let mut r = release(
            7,
            &[("main", image(70, None, 1)), ("db", image(71, None, 1))],
        );
        assert!(check_images(&r).is_ok());
        r.images[1].status = "failed".into();
        match check_images(&r) {
            Err(Error::ImageNotReady {
                release: 7,
                service,
                image: 70,
                ..
            }) => assert_eq!(service, "main"),
            other => panic!("{other:?}"),
        }
    }
}
