//! The data path's keys: `workers.io` and `[steering]` (BPF steering and the XDP guard).

use super::file::{Steering, Workers};
use super::{ConfigError, Invalid, SteeringMode};
use crate::steering::GuardMode;

/// `workers.io`. AF_XDP needs the XDP guard, which redirects to the sockets.
pub(super) fn io(
    w: &Workers,
    steering: SteeringMode,
    xdp_mode: Option<GuardMode>,
    invalid: Invalid<'_>,
) -> Result<super::IoPath, ConfigError> {
    let io = match w.io.get_ref().as_str() {
        "io_uring" => super::IoPath::IoUring,
        "af_xdp" => super::IoPath::AfXdp,
        "auto" => super::IoPath::Auto,
        other => {
            return Err(invalid(
                w.io.span(),
                "workers.io",
                format!("`{other}` is not one of io_uring, af_xdp, auto"),
            ));
        }
    };
    if io == super::IoPath::AfXdp && (steering == SteeringMode::Off || xdp_mode.is_none()) {
        return Err(invalid(
            w.io.span(),
            "workers.io",
            "`af_xdp` needs the XDP program: steering.mode must not be `off`, nor \
             steering.xdp_mode"
                .into(),
        ));
    }
    Ok(io)
}

/// `[steering]`: the steering mode and the XDP guard's (`None` = no guard).
pub(super) fn steering(
    s: &Steering,
    invalid: Invalid<'_>,
) -> Result<(SteeringMode, Option<GuardMode>), ConfigError> {
    let mode = match s.mode.get_ref().as_str() {
        "auto" => SteeringMode::Auto,
        "bpf" => SteeringMode::Bpf,
        "off" => SteeringMode::Off,
        other => {
            return Err(invalid(
                s.mode.span(),
                "steering.mode",
                format!("`{other}` is not one of auto, bpf, off"),
            ));
        }
    };
    let xdp_mode = match s.xdp_mode.get_ref().as_str() {
        "auto" => Some(GuardMode::Auto),
        "native" => Some(GuardMode::Native),
        "generic" => Some(GuardMode::Generic),
        "off" => None,
        other => {
            return Err(invalid(
                s.xdp_mode.span(),
                "steering.xdp_mode",
                format!("`{other}` is not one of auto, native, generic, off"),
            ));
        }
    };
    if let Some(name) = s.xdp_interfaces.get_ref().first() {
        return Err(invalid(
            s.xdp_interfaces.span(),
            "steering.xdp_interfaces",
            format!(
                "`{name}`: not used (a wildcard listen address is refused; the guard goes on \
                 the interface that holds the listen address)"
            ),
        ));
    }
    Ok((mode, xdp_mode))
}
