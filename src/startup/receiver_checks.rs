//! What the receiver checks with, and the warnings for settings whose absence turns a whole class
//! of notification away.

use std::sync::Arc;

use crate::config::Config;
use crate::graph::tokens::TokenValidator;

/// The validationTokens checker, when the app's identity is configured.
pub(super) fn token_validator(
    config: &Config,
    http: reqwest::Client,
) -> Option<Arc<TokenValidator>> {
    if config.client_ids.is_empty() || config.tenant_ids.is_empty() {
        return None;
    }
    Some(Arc::new(TokenValidator::new(
        &config.authority_host,
        config.client_ids.clone(),
        config.tenant_ids.clone(),
        http,
    )))
}

/// Start-up warnings for settings whose absence turns a whole class of notification away.
pub(super) fn warn_about_gaps(config: &Config, has_validator: bool, no_keys: bool) {
    if config.client_state.is_none() {
        tracing::warn!("NOTIFICATION_CLIENT_STATE is not set: every notification will be dropped");
    }
    if !has_validator {
        tracing::warn!(
            "GRAPH_CLIENT_ID / GRAPH_TENANT_ID not set: rich notifications cannot be validated and will be rejected"
        );
    }
    if no_keys {
        tracing::warn!(
            "no decryption certificate configured: rich notifications will be quarantined"
        );
    }
}
