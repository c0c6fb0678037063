//! Fault injection for tests: make a chosen actor's handler fail on a chosen message.
//!
//! Compiled only with the `fault-injection` feature (the test suite builds with it; a release
//! build of `hushd` has none of this), and armed only through `POST /v1/test/faults` of a node
//! started with `--fault-injection`. Without the feature [`check`] is an empty inline
//! function.
//!
//! A fault names the actor kind (`device`, `session`, `group`, `control`), the message
//! (`deliver`, `revoke`, `send`, ...) and the target (a device address `tenant/user/device`, a
//! session id, `tenant/group`, or `*` for any), and how many times it fires. When it fires the
//! handler panics, exactly as a bug would.

/// Panics if an armed fault matches this handler call (and counts it down).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn check(_actor: &str, _message: &str, _target: &dyn std::fmt::Display) {}

#[cfg(feature = "fault-injection")]
pub use armed::*;

#[cfg(feature = "fault-injection")]
mod armed {
    use std::sync::Mutex;

    /// One armed fault.
    #[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
    pub struct Fault {
        /// `device`, `session`, `group` or `control`.
        pub actor: String,
        /// The message kind, e.g. `deliver`, `revoke`, `send`.
        pub message: String,
        /// The target's id, or `*`.
        pub target: String,
        /// How many times it fires.
        pub times: u32,
    }

    static FAULTS: Mutex<Vec<Fault>> = Mutex::new(Vec::new());

    /// Arms a fault.
    pub fn arm(f: Fault) {
        FAULTS.lock().unwrap_or_else(|e| e.into_inner()).push(f);
    }

    /// Panics if an armed fault matches this handler call (and counts it down).
    #[allow(clippy::panic)]
    pub fn check(actor: &str, message: &str, target: &dyn std::fmt::Display) {
        let fire = {
            let mut faults = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
            let target = target.to_string();
            let hit = faults.iter_mut().find(|f| {
                f.times > 0
                    && f.actor == actor
                    && f.message == message
                    && (f.target == "*" || f.target == target)
            });
            match hit {
                Some(f) => {
                    f.times -= 1;
                    true
                }
                None => false,
            }
        };
        if fire {
            panic!("injected fault: {actor} actor on {message}");
        }
    }
}
