//! `hush --help` grouped by area, as gh and kubectl do: the command list is made from the
//! commands' own summaries, so it cannot drift from them; a command in no group is still
//! listed (under "Other commands") and a unit test keeps that list empty. The subcommands are
//! hidden from clap's own flat list once grouped (they still parse and have their own help).

use clap::Command;

/// The top-level groups: (heading, commands).
pub const TOP: &[(&str, &[&str])] = &[
    ("Getting started", &["login", "logout"]),
    ("Chat", &["send", "listen", "quarantine", "group"]),
    ("Your account", &["devices", "sessions", "password", "mfa", "keys"]),
    ("Administration", &["admin"]),
];

/// The groups of `hush admin`.
pub const ADMIN: &[(&str, &[&str])] = &[
    ("Users", &["users", "create-user", "unlock", "reset-mfa", "enforce-mfa"]),
    ("Sessions", &["sessions"]),
    ("Policies", &["policy"]),
    ("Audit", &["audit"]),
    ("Cluster", &["nodes"]),
];

/// The names of `cmd`'s visible subcommands that no group lists.
pub fn ungrouped(cmd: &Command, groups: &[(&str, &[&str])]) -> Vec<String> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| s.get_name().to_owned())
        .filter(|n| !groups.iter().any(|(_, names)| names.contains(&n.as_str())))
        .collect()
}

/// `cmd` with its subcommands listed under the headings of `groups`.
pub fn grouped(cmd: Command, path: &str, groups: &[(&str, &[&str])]) -> Command {
    let subs: Vec<(String, String)> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| (s.get_name().to_owned(), s.get_about().map(|a| a.to_string()).unwrap_or_default()))
        .collect();
    let width = subs.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let line = |name: &str, about: &str| format!("  {name:width$}  {about}\n");
    let mut listing = String::new();
    for (title, names) in groups {
        let lines: String =
            names.iter().filter_map(|n| subs.iter().find(|(s, _)| s == n)).map(|(n, a)| line(n, a)).collect();
        if !lines.is_empty() {
            listing.push_str(&format!("{title}:\n{lines}\n"));
        }
    }
    let other = ungrouped(&cmd, groups);
    if !other.is_empty() {
        listing.push_str("Other commands:\n");
        for (n, a) in subs.iter().filter(|(n, _)| other.contains(n)) {
            listing.push_str(&line(n, a));
        }
        listing.push('\n');
    }
    cmd.override_usage(format!("{path} [OPTIONS] <COMMAND>")).help_template(format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{listing}{{all-args}}\n\nRun '{path} <command> --help' for a command's options and examples.{{after-help}}"
    ))
    // Listed above by group: the flat "Commands:" section of `{all-args}` would repeat them.
    .mut_subcommands(|s| s.hide(true))
}

/// The `hush` command with grouped help at the top and under `admin`.
pub fn command(cmd: Command) -> Command {
    let cmd = grouped(cmd, "hush", TOP);
    if cmd.find_subcommand("admin").is_some() {
        cmd.mut_subcommand("admin", |a| grouped(a, "hush admin", ADMIN))
    } else {
        cmd
    }
}

/// The one stderr line of a usage error (exit 2); help and version are printed as clap does.
pub fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    eprintln!("{} (see --help)", one_line(&e.render().to_string()));
    std::process::exit(i32::from(super::exit::USAGE))
}

/// Clap's multi-line error text as one line: the message and its details, without the usage
/// and the hints.
pub fn one_line(text: &str) -> String {
    text.lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn usage_errors_are_one_line() {
        let err = command(crate::Cli::command())
            .try_get_matches_from(["hush", "sessions", "revoke"])
            .err()
            .map(|e| one_line(&e.render().to_string()));
        assert_eq!(
            err.as_deref(),
            Some("error: the following required arguments were not provided: <ID|--others|--all>")
        );
    }

    #[test]
    fn every_command_is_in_a_group() {
        let cmd = crate::Cli::command();
        assert_eq!(ungrouped(&cmd, TOP), Vec::<String>::new());
        let admin = cmd.find_subcommand("admin").cloned();
        assert!(admin.is_some());
        if let Some(a) = admin {
            assert_eq!(ungrouped(&a, ADMIN), Vec::<String>::new());
        }
        // The groups name only commands that exist.
        for (_, names) in TOP {
            for n in *names {
                assert!(cmd.find_subcommand(n).is_some(), "{n} is grouped but does not exist");
            }
        }
    }

    #[test]
    fn grouped_help_lists_each_command_once_with_its_summary() {
        let mut cmd = command(crate::Cli::command());
        let help = cmd.render_help().to_string();
        for line in [
            "Your account:",
            // Names are padded to the longest one (`quarantine`).
            "  sessions    List your login sessions",
            "Administration:",
            "Usage: hush [OPTIONS] <COMMAND>",
        ] {
            assert!(help.contains(line), "missing {line:?} in:\n{help}");
        }
        assert_eq!(help.matches("  mfa  ").count(), 1, "{help}");
        assert!(!help.contains("Commands:"), "{help}");
    }
}
