//! Authentication layers and their combination per route.
//!
//! Owns consumers (named clients with certificate identities, API keys, JWT
//! subjects, signing keys, groups), the schemes (`mtls`, `apikey`, and —
//! with their own modules — `jwt`, `signature`), and the per-route verdict:
//! `auth = [...]` needs all, `auth_any = [...]` one of; unauthenticated →
//! 401 with `WWW-Authenticate` naming the scheme, authenticated but not
//! allowed → 403. `cors.rs` answers browsers. Secrets are compared in
//! constant time and never logged.

pub mod apikey;
pub mod cors;
pub mod jwt;
pub mod replay;
pub mod signature;

use std::sync::Arc;

use crate::mtls::ClientIdentity;

/// A named client.
#[derive(Debug, Clone, Default)]
pub struct Consumer {
    pub name: String,
    pub groups: Vec<String>,
    /// RFC 2253 subject patterns (`*` wildcard) of its client certificates.
    pub cert_subjects: Vec<String>,
    /// SPIFFE IDs of its client certificates.
    pub cert_spiffe: Vec<String>,
    /// (issuer, subject) of its JWTs.
    pub jwt_subjects: Vec<(String, String)>,
}

/// All consumers, with lookups by identity.
#[derive(Debug, Default)]
pub struct Consumers {
    pub list: Vec<Arc<Consumer>>,
}

impl Consumers {
    pub fn by_name(&self, name: &str) -> Option<&Arc<Consumer>> {
        self.list.iter().find(|c| c.name == name)
    }

    /// The consumer a verified client certificate belongs to.
    pub fn by_certificate(&self, id: &ClientIdentity) -> Option<&Arc<Consumer>> {
        self.list.iter().find(|c| {
            c.cert_subjects
                .iter()
                .any(|p| crate::mtls::policy::glob_match(p, &id.subject_dn))
                || id
                    .spiffe
                    .as_deref()
                    .is_some_and(|s| c.cert_spiffe.iter().any(|x| x == s))
        })
    }

    /// The consumer of a JWT subject.
    pub fn by_jwt(&self, issuer: &str, subject: &str) -> Option<&Arc<Consumer>> {
        self.list.iter().find(|c| {
            c.jwt_subjects
                .iter()
                .any(|(i, s)| i == issuer && s == subject)
        })
    }
}

/// An authentication scheme a route can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Mtls,
    ApiKey,
    Jwt,
    Signature,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Scheme> {
        Some(match s {
            "mtls" => Scheme::Mtls,
            "apikey" | "api_key" => Scheme::ApiKey,
            "jwt" => Scheme::Jwt,
            "signature" => Scheme::Signature,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Mtls => "mtls",
            Scheme::ApiKey => "apikey",
            Scheme::Jwt => "jwt",
            Scheme::Signature => "signature",
        }
    }

    /// The `WWW-Authenticate` challenge for a request that lacks this scheme.
    pub fn challenge(self) -> &'static str {
        match self {
            Scheme::Mtls => "Mutual realm=\"portcullis\"",
            Scheme::ApiKey => "ApiKey realm=\"portcullis\"",
            Scheme::Jwt => "Bearer realm=\"portcullis\"",
            Scheme::Signature => "Signature realm=\"portcullis\"",
        }
    }
}

/// What a route asks.
#[derive(Debug, Clone, Default)]
pub struct RouteAuth {
    /// All of these.
    pub all: Vec<Scheme>,
    /// At least one of these (when not empty).
    pub any: Vec<Scheme>,
    /// Allowed consumers and groups; empty = any authenticated caller.
    pub consumers: Vec<String>,
    pub groups: Vec<String>,
}

impl RouteAuth {
    pub fn is_active(&self) -> bool {
        !self.all.is_empty() || !self.any.is_empty()
    }
}

/// One scheme's result for a request.
#[derive(Debug, Clone)]
pub enum SchemeResult {
    /// Authenticated, possibly as a known consumer.
    Ok(Option<Arc<Consumer>>),
    /// Nothing presented for this scheme.
    Missing,
    /// Presented but wrong (the reason is for the log only).
    Invalid(&'static str),
}

/// The route's verdict.
#[derive(Debug, Clone)]
pub enum Verdict {
    Allowed(Option<Arc<Consumer>>),
    /// 401; the scheme to challenge and the reason for the log.
    Unauthenticated(Scheme, &'static str),
    /// 403; the reason for the log.
    Forbidden(String),
}

/// Combines per-scheme results into the route's verdict.
pub fn decide(route: &RouteAuth, mut result: impl FnMut(Scheme) -> SchemeResult) -> Verdict {
    let mut consumer: Option<Arc<Consumer>> = None;
    let note = |c: Option<Arc<Consumer>>, consumer: &mut Option<Arc<Consumer>>| {
        if consumer.is_none() {
            *consumer = c;
        }
    };
    for s in &route.all {
        match result(*s) {
            SchemeResult::Ok(c) => note(c, &mut consumer),
            SchemeResult::Missing => return Verdict::Unauthenticated(*s, "missing"),
            SchemeResult::Invalid(r) => return Verdict::Unauthenticated(*s, r),
        }
    }
    if !route.any.is_empty() {
        let mut first_fail: Option<(Scheme, &'static str)> = None;
        let mut ok = false;
        for s in &route.any {
            match result(*s) {
                SchemeResult::Ok(c) => {
                    note(c, &mut consumer);
                    ok = true;
                    break;
                }
                SchemeResult::Missing => {
                    first_fail.get_or_insert((*s, "missing"));
                }
                SchemeResult::Invalid(r) => {
                    // An invalid credential is reported before a missing one.
                    if first_fail.is_none_or(|(_, why)| why == "missing") {
                        first_fail = Some((*s, r));
                    }
                }
            }
        }
        if !ok {
            let (s, r) = first_fail.unwrap_or((route.any[0], "missing"));
            return Verdict::Unauthenticated(s, r);
        }
    }
    if !route.consumers.is_empty() || !route.groups.is_empty() {
        let allowed = consumer.as_ref().is_some_and(|c| {
            route.consumers.iter().any(|n| n == &c.name)
                || c.groups.iter().any(|g| route.groups.contains(g))
        });
        if !allowed {
            let who = consumer
                .as_ref()
                .map_or("an unknown caller".to_string(), |c| {
                    format!("consumer \"{}\"", c.name)
                });
            return Verdict::Forbidden(format!("{who} is not allowed on this route"));
        }
    }
    Verdict::Allowed(consumer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(name: &str, groups: &[&str]) -> Arc<Consumer> {
        Arc::new(Consumer {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn all_means_all_and_any_means_one() {
        let acme = consumer("acme", &["partners"]);
        let r = RouteAuth {
            all: vec![Scheme::Mtls, Scheme::Jwt],
            ..Default::default()
        };
        let v = decide(&r, |s| {
            if s == Scheme::Mtls {
                SchemeResult::Ok(Some(acme.clone()))
            } else {
                SchemeResult::Missing
            }
        });
        assert!(matches!(
            v,
            Verdict::Unauthenticated(Scheme::Jwt, "missing")
        ));
        let v = decide(&r, |_| SchemeResult::Ok(Some(acme.clone())));
        assert!(matches!(v, Verdict::Allowed(Some(_))));

        let r = RouteAuth {
            any: vec![Scheme::Jwt, Scheme::ApiKey],
            ..Default::default()
        };
        let v = decide(&r, |s| {
            if s == Scheme::ApiKey {
                SchemeResult::Ok(None)
            } else {
                SchemeResult::Missing
            }
        });
        assert!(matches!(v, Verdict::Allowed(None)));
        let v = decide(&r, |s| {
            if s == Scheme::ApiKey {
                SchemeResult::Invalid("unknown key")
            } else {
                SchemeResult::Missing
            }
        });
        assert!(matches!(
            v,
            Verdict::Unauthenticated(Scheme::ApiKey, "unknown key")
        ));
    }

    #[test]
    fn consumers_and_groups_gate_the_route() {
        let acme = consumer("acme", &["partners"]);
        let bob = consumer("bob", &[]);
        let r = RouteAuth {
            all: vec![Scheme::ApiKey],
            groups: vec!["partners".into()],
            ..Default::default()
        };
        assert!(matches!(
            decide(&r, |_| SchemeResult::Ok(Some(acme.clone()))),
            Verdict::Allowed(_)
        ));
        assert!(matches!(
            decide(&r, |_| SchemeResult::Ok(Some(bob.clone()))),
            Verdict::Forbidden(_)
        ));
        assert!(matches!(
            decide(&r, |_| SchemeResult::Ok(None)),
            Verdict::Forbidden(_)
        ));
    }
}
