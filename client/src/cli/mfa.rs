//! `hush mfa`: the second factor of the logged-in user (TOTP from an authenticator app, backup
//! codes, trusted devices).

use anyhow::Context;
use clap::{Args, Subcommand};
use hush_client::Session;
use hush_protocol::api::{BackupCodes, MfaState, Secret, SessionMfa};
use hush_protocol::ids::DeviceId;

use super::output::{self, Output};
use super::prompt;
use super::stepup::{self, StepUp};

/// `hush mfa ...`
#[derive(Args)]
#[command(after_long_help = "Examples:
  hush mfa status
  hush mfa enroll                      # scan the QR code, then:
  hush mfa confirm 123456              # prints the backup codes, once
  hush mfa backup-codes regenerate --code 654321
  hush mfa trusted
  hush mfa trusted revoke 2
  hush mfa disable")]
pub struct MfaArgs {
    #[command(subcommand)]
    cmd: MfaCmd,
    #[command(flatten)]
    step: StepUp,
}

#[derive(Subcommand)]
enum MfaCmd {
    /// Show the tenant's level, your factor, backup codes left, lock and this session's state.
    Status,
    /// Start a TOTP enrolment: draws the QR code and prints the otpauth:// URI and the secret.
    #[command(
        after_long_help = "The QR code is drawn for a dark terminal background; use --invert on a light one.
Nothing changes on your account until `hush mfa confirm CODE`."
    )]
    Enroll {
        /// Draw the QR code for a light terminal background.
        #[arg(long)]
        invert: bool,
    },
    /// Turn TOTP on with a first code from the app; prints the backup codes (shown only now).
    Confirm {
        /// The code the app shows now (else asked for).
        code: Option<String>,
    },
    /// Backup codes: one-time codes for when the authenticator is not at hand.
    #[command(subcommand)]
    BackupCodes(BackupCmd),
    /// Devices that skip the login challenge ("remember this device"): list, revoke.
    Trusted {
        #[command(subcommand)]
        cmd: Option<TrustedCmd>,
    },
    /// Turn TOTP off: the factor, the backup codes and the trusted devices go (needs a code).
    Disable,
}

#[derive(Subcommand)]
enum BackupCmd {
    /// Make a new set of ten backup codes (needs a code); the old set stops working.
    Regenerate,
}

#[derive(Subcommand)]
enum TrustedCmd {
    /// List your trusted devices (the default).
    List,
    /// Stop trusting a device: its next login must pass the challenge again.
    Revoke {
        /// Device id (see `hush mfa trusted`).
        device: DeviceId,
    },
}

fn state(s: MfaState) -> &'static str {
    match s {
        MfaState::None => "none",
        MfaState::MfaPending => "mfa_pending",
        MfaState::Verified => "verified",
        MfaState::EnrollRequired => "enroll_required",
    }
}

/// One line about a session's MFA state, for tables.
pub fn session_state(m: Option<&SessionMfa>) -> String {
    match m {
        None => "none".into(),
        Some(m) => match (m.state, m.method) {
            (MfaState::Verified, Some(method)) => {
                format!(
                    "verified ({})",
                    serde_json::to_value(method)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )
            }
            (s, _) => state(s).into(),
        },
    }
}

fn print_codes(codes: &BackupCodes, out: Output) -> anyhow::Result<()> {
    if out.json() {
        return output::print_json(codes);
    }
    println!("Backup codes (each works once; shown only now, keep them somewhere safe):");
    for c in &codes.codes {
        println!("  {}", c.expose());
    }
    Ok(())
}

/// The QR code of `text` in Unicode half blocks, two modules a character vertically, with the
/// standard quiet zone. By default dark modules are drawn as background (for a dark terminal),
/// `invert` draws them as foreground.
pub fn qr_text(text: &str, invert: bool) -> anyhow::Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .context("the URI does not fit a QR code")?;
    let mut r = code.render::<Dense1x2>();
    r.quiet_zone(true);
    if !invert {
        r.dark_color(Dense1x2::Light).light_color(Dense1x2::Dark);
    }
    Ok(r.build())
}

/// Runs `hush mfa ...`.
pub async fn run(s: &Session, args: MfaArgs, out: Output) -> anyhow::Result<()> {
    match args.cmd {
        MfaCmd::Status => {
            let st = s.mfa_status().await?;
            if out.json() {
                return output::print_json(&st);
            }
            let level = serde_json::to_value(st.level)?;
            println!("Tenant level:       {}", level.as_str().unwrap_or("?"));
            println!(
                "Required of you:    {}{}",
                output::yes(st.required),
                if st.exempt { " (exempt)" } else { "" }
            );
            println!("TOTP:               {}", if st.totp_enabled { "on" } else { "off" });
            println!("Backup codes left:  {}", st.backup_codes_left);
            println!("Failed attempts:    {}", st.failed_attempts);
            if let Some(t) = st.locked_until_ms {
                println!("Locked until:       {}", output::time(t));
            }
            println!("This session:       {}", session_state(Some(&st.session)));
            if let Some(t) = st.session.enroll_deadline_ms {
                println!("Enrol before:       {}", output::time(t));
            }
        }
        MfaCmd::Enroll { invert } => {
            let e = s.totp_enroll().await?;
            if out.json() {
                return output::print_json(&e);
            }
            print!("{}", qr_text(e.otpauth_uri.expose(), invert)?);
            println!();
            println!("Scan the QR code with your authenticator app, or enter the secret by hand.");
            println!("Secret:  {}", e.secret.expose());
            println!("URI:     {}", e.otpauth_uri.expose());
            let alg = serde_json::to_value(e.algorithm)?;
            println!(
                "({}, {} digits, a new code every {} s.)",
                alg.as_str().unwrap_or("?"),
                e.digits,
                e.period
            );
            println!("Nothing changes until you confirm with the code the app shows: hush mfa confirm CODE");
        }
        MfaCmd::Confirm { code } => {
            let code = prompt::ask_secret(code, "Code from your authenticator: ")?;
            let codes = s.totp_confirm(&Secret::new(code.expose().trim())).await?;
            if !out.json() {
                println!("TOTP is on. Every login of yours now asks for a code.");
            }
            print_codes(&codes, out)?;
        }
        MfaCmd::BackupCodes(BackupCmd::Regenerate) => {
            let codes = stepup::run(s, &args.step, || s.regenerate_backup_codes()).await?;
            print_codes(&codes, out)?;
        }
        MfaCmd::Trusted { cmd: None | Some(TrustedCmd::List) } => {
            let list = s.trusted_devices().await?;
            if out.json() {
                return output::print_json(&list);
            }
            let mut t = output::table(&["device", "trusted since", "until"]);
            for d in &list.devices {
                t.add_row(vec![d.device.to_string(), output::time(d.created_ms), output::time(d.expires_ms)]);
            }
            output::print_table(&t, "No trusted devices.");
        }
        MfaCmd::Trusted { cmd: Some(TrustedCmd::Revoke { device }) } => {
            s.revoke_trusted_device(device).await?;
            println!("Device {device} is no longer trusted: its next login must pass the challenge.");
        }
        MfaCmd::Disable => {
            stepup::run(s, &args.step, || s.totp_disable()).await?;
            println!("TOTP is off; your backup codes and trusted devices are gone.");
        }
    }
    Ok(())
}
