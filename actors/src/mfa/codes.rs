//! A code as the user typed it, and what checking one against the user's record gave.

/// What checking a TOTP or backup code gave.
pub(crate) enum Outcome {
    Ok,
    Failed { attempts: u32, locked_until: Option<u64> },
    Locked(u64),
    NotEnrolled,
}

/// A code without spaces and dashes, in lower case.
pub(crate) fn normalize_code(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace() && *c != '-').map(|c| c.to_ascii_lowercase()).collect()
}
