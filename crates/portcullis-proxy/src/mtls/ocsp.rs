//! OCSP as a client: requests, verified responses, and fetching over HTTP.
//!
//! Owns building an RFC 6960 request for a certificate and its issuer,
//! checking a response (signed by the issuer or by a responder the issuer
//! delegated with id-kp-OCSPSigning; the certificate's CertID; thisUpdate /
//! nextUpdate), and the small HTTP fetch used for both OCSP and CRL
//! distribution points. The formats are RustCrypto's `x509-ocsp`; the
//! signature check uses the same webpki algorithms as the TLS verifier.

use std::time::{Duration, SystemTime};

use der::asn1::{Null, OctetString};
use der::{Decode, Encode};
use rustls_pki_types::SignatureVerificationAlgorithm;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest,
};

/// id-kp-OCSPSigning.
const OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";

/// A verified OCSP answer about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcspStatus {
    Good,
    Revoked,
    Unknown,
}

/// A verified response with its freshness window.
#[derive(Debug, Clone)]
pub struct OcspAnswer {
    pub status: OcspStatus,
    pub this_update: SystemTime,
    pub next_update: Option<SystemTime>,
}

fn sha1(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .to_vec()
}

fn cert_id(leaf: &Certificate, issuer: &Certificate) -> Result<CertId, String> {
    let name = issuer
        .tbs_certificate
        .subject
        .to_der()
        .map_err(|e| e.to_string())?;
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    Ok(CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid: der::oid::ObjectIdentifier::new_unwrap("1.3.14.3.2.26"),
            parameters: Some(der::Any::from(Null)),
        },
        issuer_name_hash: OctetString::new(sha1(&name)).map_err(|e| e.to_string())?,
        issuer_key_hash: OctetString::new(sha1(key)).map_err(|e| e.to_string())?,
        serial_number: leaf.tbs_certificate.serial_number.clone(),
    })
}

/// The DER OCSP request for `leaf` issued by `issuer` (SHA-1 CertID, as RFC 5019).
pub fn request_der(leaf_der: &[u8], issuer_der: &[u8]) -> Result<Vec<u8>, String> {
    let leaf = Certificate::from_der(leaf_der).map_err(|e| e.to_string())?;
    let issuer = Certificate::from_der(issuer_der).map_err(|e| e.to_string())?;
    let req = OcspRequest {
        tbs_request: TbsRequest {
            request_list: vec![Request {
                req_cert: cert_id(&leaf, &issuer)?,
                single_request_extensions: None,
            }],
            ..Default::default()
        },
        optional_signature: None,
    };
    req.to_der().map_err(|e| e.to_string())
}

/// The OCSP responder URL in a certificate's Authority Information Access.
pub fn responder_url(cert_der: &[u8]) -> Option<String> {
    use x509_parser::prelude::*;
    let (_, c) = X509Certificate::from_der(cert_der).ok()?;
    for ext in c.extensions() {
        if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
            for ad in &aia.accessdescs {
                if ad.access_method.to_id_string() == "1.3.6.1.5.5.7.48.1" {
                    if let GeneralName::URI(u) = &ad.access_location {
                        return Some(u.to_string());
                    }
                }
            }
        }
    }
    None
}

/// The http(s) CRL distribution point URLs of a certificate.
pub fn crl_urls(cert_der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::*;
    let mut out = Vec::new();
    let Ok((_, c)) = X509Certificate::from_der(cert_der) else {
        return out;
    };
    for ext in c.extensions() {
        if let ParsedExtension::CRLDistributionPoints(cdp) = ext.parsed_extension() {
            for dp in cdp.iter() {
                if let Some(DistributionPointName::FullName(names)) = &dp.distribution_point {
                    for n in names {
                        if let GeneralName::URI(u) = n {
                            if u.starts_with("http://") || u.starts_with("https://") {
                                out.push(u.to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Content of a DER SEQUENCE (what webpki's AlgorithmIdentifier holds).
fn seq_content(der: &[u8]) -> &[u8] {
    if der.len() < 2 {
        return der;
    }
    let l = der[1];
    let hdr = if l < 0x80 { 2 } else { 2 + (l & 0x7f) as usize };
    der.get(hdr..).unwrap_or(der)
}

fn verify_sig(
    signer: &Certificate,
    alg: &spki::AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let spki_info = &signer.tbs_certificate.subject_public_key_info;
    let (Ok(key_alg), Ok(sig_alg)) = (spki_info.algorithm.to_der(), alg.to_der()) else {
        return false;
    };
    let (key_alg, sig_alg) = (
        seq_content(&key_alg).to_vec(),
        seq_content(&sig_alg).to_vec(),
    );
    let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
    algs.all
        .iter()
        .any(|a: &&dyn SignatureVerificationAlgorithm| {
            AsRef::<[u8]>::as_ref(&a.public_key_alg_id()) == key_alg.as_slice()
                && AsRef::<[u8]>::as_ref(&a.signature_alg_id()) == sig_alg.as_slice()
                && a.verify_signature(spki_info.subject_public_key.raw_bytes(), message, signature)
                    .is_ok()
        })
}

fn has_ocsp_signing(c: &Certificate) -> bool {
    use x509_parser::prelude::*;
    let Ok(der) = c.to_der() else { return false };
    let Ok((_, x)) = X509Certificate::from_der(&der) else {
        return false;
    };
    matches!(x.extended_key_usage(), Ok(Some(eku)) if eku.value.ocsp_signing || eku.value.other.iter().any(|o| o.to_id_string() == OCSP_SIGNING))
}

fn to_system(t: &x509_ocsp::OcspGeneralizedTime) -> SystemTime {
    t.0.to_system_time()
}

/// Checks a DER OCSP response about `leaf` issued by `issuer`, at `now`.
pub fn verify_response(
    resp_der: &[u8],
    leaf_der: &[u8],
    issuer_der: &[u8],
    now: SystemTime,
) -> Result<OcspAnswer, String> {
    let leaf = Certificate::from_der(leaf_der).map_err(|e| format!("leaf: {e}"))?;
    let issuer = Certificate::from_der(issuer_der).map_err(|e| format!("issuer: {e}"))?;
    let resp = OcspResponse::from_der(resp_der).map_err(|e| format!("response: {e}"))?;
    if resp.response_status != OcspResponseStatus::Successful {
        return Err(format!("responder said {:?}", resp.response_status));
    }
    let bytes = resp.response_bytes.ok_or("no response bytes")?;
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| format!("basic response: {e}"))?;
    let tbs = basic
        .tbs_response_data
        .to_der()
        .map_err(|e| e.to_string())?;
    let sig = basic.signature.raw_bytes();
    let signed_by_issuer = verify_sig(&issuer, &basic.signature_algorithm, &tbs, sig);
    let signed_by_delegate = !signed_by_issuer
        && basic.certs.iter().flatten().any(|c| {
            let Ok(c_tbs) = c.tbs_certificate.to_der() else {
                return false;
            };
            c.tbs_certificate.issuer == issuer.tbs_certificate.subject
                && has_ocsp_signing(c)
                && verify_sig(
                    &issuer,
                    &c.signature_algorithm,
                    &c_tbs,
                    c.signature.raw_bytes(),
                )
                && verify_sig(c, &basic.signature_algorithm, &tbs, sig)
        });
    if !signed_by_issuer && !signed_by_delegate {
        return Err("the response is not signed by the issuer or a responder it delegated".into());
    }
    let want = cert_id(&leaf, &issuer)?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| {
            r.cert_id.serial_number == want.serial_number
                && r.cert_id.issuer_key_hash == want.issuer_key_hash
        })
        .ok_or("the response does not cover this certificate")?;
    let this_update = to_system(&single.this_update);
    let next_update = single.next_update.as_ref().map(to_system);
    // Five minutes of clock skew either way.
    let skew = Duration::from_secs(300);
    if this_update > now + skew {
        return Err("the response is not yet valid".into());
    }
    if let Some(n) = next_update {
        if n + skew < now {
            return Err("the response has expired".into());
        }
    }
    let status = match single.cert_status {
        CertStatus::Good(_) => OcspStatus::Good,
        CertStatus::Revoked(_) => OcspStatus::Revoked,
        CertStatus::Unknown(_) => OcspStatus::Unknown,
    };
    Ok(OcspAnswer {
        status,
        this_update,
        next_update,
    })
}

/// A small HTTP/1.1 client for OCSP and CRL fetching (plain HTTP and HTTPS
/// with the web PKI disabled: responses are verified by signature instead).
#[derive(Clone)]
pub struct Fetcher {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    timeout: Duration,
}

impl Default for Fetcher {
    fn default() -> Self {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(http);
        Fetcher {
            client,
            timeout: Duration::from_secs(10),
        }
    }
}

impl Fetcher {
    /// GET a URL (at most 10 MiB), or POST `body` with `content_type`.
    pub async fn fetch(
        &self,
        url: &str,
        post: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Vec<u8>, String> {
        use http_body_util::BodyExt;
        let uri: http::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("only http:// URLs are fetched (got {url})"));
        }
        let builder = http::Request::builder()
            .uri(uri)
            .header(http::header::USER_AGENT, "portcullis");
        let req = match post {
            Some((ct, body)) => builder
                .method(http::Method::POST)
                .header(http::header::CONTENT_TYPE, ct)
                .body(http_body_util::Full::new(bytes::Bytes::from(body))),
            None => builder
                .method(http::Method::GET)
                .body(http_body_util::Full::new(bytes::Bytes::new())),
        }
        .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let body = tokio::time::timeout(
            self.timeout,
            http_body_util::Limited::new(resp.into_body(), 10 * 1024 * 1024).collect(),
        )
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
        Ok(body.to_bytes().to_vec())
    }

    /// Asks `url` about `leaf` and verifies the answer.
    pub async fn ocsp(
        &self,
        url: &str,
        leaf_der: &[u8],
        issuer_der: &[u8],
    ) -> Result<(OcspAnswer, Vec<u8>), String> {
        let req = request_der(leaf_der, issuer_der)?;
        let body = self
            .fetch(url, Some(("application/ocsp-request", req)))
            .await?;
        let answer = verify_response(&body, leaf_der, issuer_der, SystemTime::now())?;
        Ok((answer, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_pki::{Ca, CaInitOptions, ClientRequest, RevocationReason};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    #[test]
    fn requests_and_verified_answers_from_the_builtin_responder() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(&dir.path().join("ca"), &CaInitOptions::default()).unwrap();
        let inter = der(ca.intermediate_cert_pem());
        let good = ca.issue_client(&ClientRequest::new("good")).unwrap();
        let bad = ca.issue_client(&ClientRequest::new("bad")).unwrap();
        ca.revoke(&bad.serial_hex, RevocationReason::KeyCompromise)
            .unwrap();
        let now = SystemTime::now();
        for (issued, want) in [(&good, OcspStatus::Good), (&bad, OcspStatus::Revoked)] {
            let leaf = der(&issued.cert_pem);
            let req = request_der(&leaf, &inter).unwrap();
            let resp = ca.ocsp_respond(&req, Duration::from_secs(3600));
            let ans = verify_response(&resp, &leaf, &inter, now).unwrap();
            assert_eq!(ans.status, want);
            assert!(ans.next_update.is_some());
        }
        // A response about another certificate, or checked against the wrong issuer, is refused.
        let leaf = der(&good.cert_pem);
        let other = der(&bad.cert_pem);
        let resp = ca.ocsp_respond(
            &request_der(&other, &inter).unwrap(),
            Duration::from_secs(3600),
        );
        assert!(verify_response(&resp, &leaf, &inter, now).is_err());
        let root = der(ca.root_cert_pem());
        assert!(verify_response(&resp, &other, &root, now).is_err());
        // Expired by the clock.
        let resp = ca.ocsp_respond(
            &request_der(&leaf, &inter).unwrap(),
            Duration::from_secs(3600),
        );
        assert!(
            verify_response(&resp, &leaf, &inter, now + Duration::from_secs(3 * 3600)).is_err()
        );
        // Garbage.
        assert!(verify_response(b"\x30\x03\x0a\x01\x00", &leaf, &inter, now).is_err());
    }
}
