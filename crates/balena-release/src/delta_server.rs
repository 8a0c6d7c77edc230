//! The delta server client: `GET {delta_url}/api/v3/delta?src=&dest=` per
//! changed service, what each answer means (accepted, still building,
//! refused for that service only, or an error that ends the run), and the
//! bounded concurrent sending of one round's requests.

use futures_util::{StreamExt, TryStreamExt, stream};

use crate::client::Client;
use crate::error::{Error, Server};
use crate::event::{Event, TriggerOutcome};
use crate::http::{Attempt, Limit, NoAnswerKind, Sent, Sink, host_of, server_message};
use crate::rules::{Pair, Refusal, Requests};

impl Client {
    /// Asks the delta server for the delta of one image pair. A refusal
    /// (a 4xx other than 401 and 429) concerns this service only and is
    /// returned; anything else that fails ends the run.
    pub(crate) async fn trigger(
        &self,
        service: &str,
        pair: Pair,
        events: Sink<'_>,
    ) -> Result<Option<Refusal>, Error> {
        let mut url = self.inner.delta.clone();
        let path = format!("{}/api/v3/delta", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_query(Some(&format!("src={}&dest={}", pair.0, pair.1)));
        let what = format!("delta request for service `{service}`");
        let (outcome, refusal) = self
            .inner
            .http
            .retrying(&what, events, || async {
                match self.inner.http.send(&url, Limit::DELTA).await {
                    // Readiness comes from the delta rows; a slow answer
                    // only means the build is still going.
                    Sent::NoAnswer(failure) if failure.kind == NoAnswerKind::TimedOut => {
                        Attempt::Done((TriggerOutcome::TimedOut, None))
                    }
                    Sent::NoAnswer(failure) => failure.attempt(Server::Delta, &url),
                    Sent::TooLarge { limit } => Attempt::Fail(Error::TooLarge {
                        server: Server::Delta,
                        host: host_of(&url),
                        limit,
                    }),
                    Sent::Answer {
                        status,
                        body,
                        retry_after,
                        location,
                        ..
                    } => {
                        let code = status.as_u16();
                        let message = || server_message(&body, location.as_deref(), status);
                        let delta_error = || Error::Delta {
                            service: service.to_owned(),
                            status: Some(code),
                            message: message(),
                        };
                        match code {
                            200..=299 => Attempt::Done((TriggerOutcome::Accepted, None)),
                            // Devices read 502 and 504 as "still building"; a
                            // 503 is an outage: retried first (see below).
                            502 | 504 => Attempt::Done((
                                TriggerOutcome::StillProcessing { status: code },
                                None,
                            )),
                            401 => Attempt::Fail(Error::Unauthorized {
                                server: Server::Delta,
                                with_token: self.inner.http.has_token(),
                            }),
                            408 | 429 | 500..=599 => Attempt::Retry {
                                reason: format!("`{code}`"),
                                after: retry_after,
                                error: delta_error(),
                            },
                            // Devices fall back to a full pull for this
                            // service; the others are not concerned.
                            400..=499 => Attempt::Done((
                                TriggerOutcome::Refused { status: code },
                                Some(Refusal {
                                    status: code,
                                    message: message(),
                                }),
                            )),
                            _ => Attempt::Fail(delta_error()),
                        }
                    }
                }
            })
            .await
            .or_else(|error| match error {
                // A 503 is retried like any outage; one that lasts counts as
                // "still processing", as 502 and 504 do: the rows tell the rest.
                Error::Delta {
                    status: Some(503), ..
                } => Ok((TriggerOutcome::StillProcessing { status: 503 }, None)),
                other => Err(other),
            })?;
        events(Event::Triggered {
            service_name: service.to_owned(),
            source_image: pair.0,
            target_image: pair.1,
            outcome,
        });
        Ok(refusal)
    }

    /// Requests the deltas of `jobs` (service name, image pair) with bounded
    /// concurrency, counting attempts and refusals per pair.
    pub(crate) async fn trigger_all(
        &self,
        jobs: Vec<(String, Pair)>,
        requests: &mut Requests,
        concurrency: usize,
        events: Sink<'_>,
    ) -> Result<(), Error> {
        for (_, pair) in &jobs {
            *requests.attempts.entry(*pair).or_insert(0) += 1;
        }
        let answers = stream::iter(jobs.iter().map(|(service, pair)| async move {
            Ok::<_, Error>((*pair, self.trigger(service, *pair, events).await?))
        }))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
        for (pair, refusal) in answers {
            requests.answered(pair, refusal);
        }
        Ok(())
    }
}
