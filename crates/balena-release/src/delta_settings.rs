//! Whether a device uses image deltas, from the supervisor's configuration
//! variables: its own (`device_config_variable`), else its fleet's
//! (`application_config_variable`), else balenaCloud's default (v3 deltas
//! on: the target states it serves carry `RESIN_SUPERVISOR_DELTA=1` and
//! `RESIN_SUPERVISOR_DELTA_VERSION=3`). A device with deltas off, or a delta
//! version other than 3, pulls every changed image even when a delta is
//! ready. Pure functions over the variables read.

/// The variables that decide, `BALENA_` before the older `RESIN_` name.
pub(crate) const NAMES: [&str; 4] = [
    "BALENA_SUPERVISOR_DELTA",
    "RESIN_SUPERVISOR_DELTA",
    "BALENA_SUPERVISOR_DELTA_VERSION",
    "RESIN_SUPERVISOR_DELTA_VERSION",
];

/// One configuration variable: its name and value.
pub(crate) type Variable = (String, String);

/// The value of setting `suffix` (`DELTA` or `DELTA_VERSION`) among
/// `variables`, the `BALENA_` name first.
fn value<'a>(variables: &'a [Variable], suffix: &str) -> Option<&'a str> {
    ["BALENA_SUPERVISOR_", "RESIN_SUPERVISOR_"]
        .iter()
        .find_map(|prefix| {
            variables
                .iter()
                .find(|(name, _)| name.strip_prefix(prefix) == Some(suffix))
        })
        .map(|(_, value)| value.trim())
}

/// Whether a device with `own` variables in a fleet with `fleet` variables
/// uses v3 deltas: each setting is the device's when it has one, else the
/// fleet's, else the default.
pub(crate) fn deltas_on(own: &[Variable], fleet: &[Variable]) -> bool {
    let setting = |suffix| value(own, suffix).or_else(|| value(fleet, suffix));
    let enabled = setting("DELTA").is_none_or(|v| !matches!(v, "0" | "false" | "False" | "FALSE"));
    let version_3 = setting("DELTA_VERSION").is_none_or(|v| v.parse::<u32>() == Ok(3));
    enabled && version_3
}

/// A device with variables of its own: the releases it runs and is pinned
/// to, and whether it uses deltas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceSetting {
    pub(crate) running: Option<u64>,
    pub(crate) pinned: Option<u64>,
    pub(crate) deltas_on: bool,
}

/// The devices of a transition (`devices` of them, from `running` to
/// `target`) that do not use deltas: those with a setting of their own that
/// says so, and, when the fleet's says so, every other device.
pub(crate) fn without_deltas(
    devices: u64,
    running: u64,
    target: u64,
    fleet_target: u64,
    fleet_on: bool,
    own: &[DeviceSetting],
) -> u64 {
    let mine = own
        .iter()
        .filter(|d| d.running == Some(running) && d.pinned.unwrap_or(fleet_target) == target);
    let (on, off) = mine.fold((0u64, 0u64), |(on, off), d| {
        if d.deltas_on {
            (on + 1, off)
        } else {
            (on, off + 1)
        }
    });
    if fleet_on {
        off.min(devices)
    } else {
        devices.saturating_sub(on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<Variable> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_device_decides_then_the_fleet_then_the_default() {
        assert!(deltas_on(&[], &[]), "balenaCloud's default: on");
        assert!(!deltas_on(&[], &vars(&[("BALENA_SUPERVISOR_DELTA", "0")])));
        assert!(!deltas_on(
            &[],
            &vars(&[("RESIN_SUPERVISOR_DELTA", "false")])
        ));
        assert!(deltas_on(
            &vars(&[("BALENA_SUPERVISOR_DELTA", "1")]),
            &vars(&[("BALENA_SUPERVISOR_DELTA", "0")])
        ));
        assert!(!deltas_on(
            &vars(&[("RESIN_SUPERVISOR_DELTA", "0")]),
            &vars(&[("BALENA_SUPERVISOR_DELTA", "1")])
        ));
        // BALENA_ wins over RESIN_ on the same level.
        assert!(deltas_on(
            &vars(&[
                ("RESIN_SUPERVISOR_DELTA", "0"),
                ("BALENA_SUPERVISOR_DELTA", "1")
            ]),
            &[]
        ));
        // Another delta version: no v3 delta.
        assert!(!deltas_on(
            &vars(&[("BALENA_SUPERVISOR_DELTA_VERSION", "2")]),
            &[]
        ));
        assert!(deltas_on(
            &vars(&[("BALENA_SUPERVISOR_DELTA_VERSION", " 3 ")]),
            &[]
        ));
        assert!(!deltas_on(
            &[],
            &vars(&[("RESIN_SUPERVISOR_DELTA_VERSION", "two")])
        ));
    }

    #[test]
    fn a_transition_counts_its_devices_without_deltas() {
        let device = |running, pinned, deltas_on| DeviceSetting {
            running: Some(running),
            pinned,
            deltas_on,
        };
        let own = [
            device(1, None, false),
            device(1, None, true),
            device(1, Some(2), false),
            device(3, None, false),
        ];
        // Fleet on: the devices that turned deltas off themselves.
        assert_eq!(without_deltas(5, 1, 9, 9, true, &own), 1);
        assert_eq!(without_deltas(2, 1, 2, 9, true, &own), 1);
        assert_eq!(without_deltas(4, 3, 9, 9, true, &own), 1);
        // Fleet off: every device but those that turned them on.
        assert_eq!(without_deltas(5, 1, 9, 9, false, &own), 4);
        assert_eq!(without_deltas(7, 4, 9, 9, false, &own), 7);
        // Never more than the transition's devices.
        assert_eq!(without_deltas(0, 1, 9, 9, true, &own), 0);
    }
}
