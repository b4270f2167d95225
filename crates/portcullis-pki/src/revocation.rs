//! Revocation reasons (RFC 5280 §5.3.1) and their names on the command line.
//! Must not: decide who may revoke; the caller does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::PkiError;

/// Why a certificate was revoked. Names and codes follow RFC 5280.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
    AaCompromise,
}

// === impl RevocationReason ===

impl RevocationReason {
    pub const ALL: [RevocationReason; 9] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::CaCompromise => "caCompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::CertificateHold => "certificateHold",
            RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
            RevocationReason::AaCompromise => "aaCompromise",
        }
    }

    /// The CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    pub(crate) fn to_rcgen(self) -> rcgen::RevocationReason {
        use rcgen::RevocationReason as R;
        match self {
            RevocationReason::Unspecified => R::Unspecified,
            RevocationReason::KeyCompromise => R::KeyCompromise,
            RevocationReason::CaCompromise => R::CaCompromise,
            RevocationReason::AffiliationChanged => R::AffiliationChanged,
            RevocationReason::Superseded => R::Superseded,
            RevocationReason::CessationOfOperation => R::CessationOfOperation,
            RevocationReason::CertificateHold => R::CertificateHold,
            RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
            RevocationReason::AaCompromise => R::AaCompromise,
        }
    }
}

impl FromStr for RevocationReason {
    type Err = PkiError;

    /// Accepts the RFC names in any case, with or without `-`/`_` (`keyCompromise`,
    /// `key-compromise`, `KEY_COMPROMISE`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_' && !c.is_whitespace())
            .flat_map(|c| c.to_lowercase())
            .collect();
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.as_str().to_ascii_lowercase() == norm)
            .ok_or_else(|| PkiError::UnknownReason(s.to_string()))
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
