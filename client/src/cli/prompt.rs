//! Prompts: from the terminal when there is one (passwords not echoed), else one line each
//! from stdin, so scripts and tests can pipe the answers. End of input is an error, never a
//! hang.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use hush_protocol::api::Secret;

/// One line of stdin without its line end; an error at end of input.
fn stdin_line(prompt: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    let n = std::io::stdin().lock().read_line(&mut line).context("cannot read stdin")?;
    if n == 0 {
        bail!("no answer for '{}' (stdin is closed)", prompt.trim_end_matches([':', ' ']));
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// A secret: `given`, else asked for (not echoed on a terminal).
pub fn ask_secret(given: Option<String>, prompt: &str) -> anyhow::Result<Secret> {
    if let Some(p) = given {
        return Ok(Secret::new(p));
    }
    if std::io::stdin().is_terminal() {
        return Ok(Secret::new(rpassword::prompt_password(prompt).context("cannot read the terminal")?));
    }
    Ok(Secret::new(stdin_line(prompt)?))
}

/// A visible answer (a one-time code): `given`, else asked for on stderr (stdin when it is
/// not a terminal).
pub fn ask_line(given: Option<String>, prompt: &str) -> anyhow::Result<String> {
    if let Some(p) = given {
        return Ok(p.trim().to_owned());
    }
    if std::io::stdin().is_terminal() {
        use std::io::Write;
        eprint!("{prompt}");
        std::io::stderr().flush().ok();
    }
    Ok(stdin_line(prompt)?.trim().to_owned())
}

/// Whether prompts can be asked again (a person at a terminal).
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}
