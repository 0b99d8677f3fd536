//! validationTokens (temporary interface; the full validator is being merged).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no validation tokens")]
    NoTokens,
}
pub struct ValidatedTokens(std::collections::HashSet<String>);
impl ValidatedTokens {
    pub fn covers(&self, tenant: &str) -> bool {
        self.0.contains(tenant)
    }
}
pub struct TokenValidator;
impl TokenValidator {
    pub async fn validate(&self, _tokens: &[String]) -> Result<ValidatedTokens, TokenError> {
        Err(TokenError::NoTokens)
    }
}
impl TokenValidator {
    pub fn new(_a: &str, _b: Vec<String>, _c: Vec<String>, _h: reqwest::Client) -> Self {
        TokenValidator
    }
}
