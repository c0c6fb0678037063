//! Step-up: sensitive actions need a second-factor proof by this session within the tenant's
//! window. When the node answers `403 step_up_required`, the command asks for a code (or takes
//! `--code`), asks the node for a challenge, answers it (a TOTP code, or a backup code:
//! `xxxxx-xxxxx`) and retries the action once. When it answers `403 mfa_enrollment_required`
//! (the caller has no factor to step up with), it says to enrol one.

use std::future::Future;

use hush_client::{ClientError, Session};
use hush_protocol::api::Secret;

/// `--code` of the commands that may need a step-up.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct StepUp {
    /// A TOTP or backup code, used only if the node asks for a step-up (else asked for).
    #[arg(long, global = true, value_name = "CODE", env = "HUSH_MFA_CODE", hide_env_values = true)]
    pub code: Option<String>,
}

/// Whether the node refused for want of a step-up.
pub fn needs_step_up(e: &ClientError) -> bool {
    matches!(e, ClientError::Http { body, .. } if body.error == "step_up_required")
}

/// Whether the node refused because the caller has no second factor to step up with.
pub fn needs_enrolment(e: &ClientError) -> bool {
    matches!(e, ClientError::Http { status: 403, body } if body.error == "mfa_enrollment_required")
}

/// The one-line error for [`needs_enrolment`].
fn enrol_first() -> anyhow::Error {
    anyhow::anyhow!(
        "mfa_enrollment_required: this action needs a second factor; enrol one with `hush mfa enroll` (then `hush mfa confirm CODE`) and run it again"
    )
}

/// Whether a code looks like a backup code (`xxxxx-xxxxx`) rather than a TOTP code (digits).
pub fn is_backup_code(code: &str) -> bool {
    !code.trim().chars().all(|c| c.is_ascii_digit())
}

/// Proves the second factor for this session: a new challenge answered with `code`.
pub async fn verify(s: &Session, code: &Secret) -> Result<(), ClientError> {
    let challenge = s.mfa_challenge().await?;
    let code = Secret::new(code.expose().trim());
    s.mfa_answer(&challenge.challenge_id, &code, is_backup_code(code.expose()), false).await?;
    Ok(())
}

/// Runs `action`; on `step_up_required` verifies a code (`--code`, else asked for) and runs it
/// once more.
pub async fn run<T, F, Fut>(s: &Session, step: &StepUp, mut action: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    match action().await {
        Err(e) if needs_step_up(&e) => {
            let code = match &step.code {
                Some(c) => Secret::new(c.clone()),
                None => super::prompt::ask_secret(
                    None,
                    "This action needs a fresh second factor. Code from your authenticator (or a backup code): ",
                )?,
            };
            verify(s, &code).await?;
            Ok(action().await?)
        }
        Err(e) if needs_enrolment(&e) => Err(enrol_first()),
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_codes_are_told_from_totp_codes() {
        assert!(!is_backup_code("123456"));
        assert!(!is_backup_code(" 12345678\n"));
        assert!(is_backup_code("abcde-12345"));
    }
}
