//! Rule: a signal sent to the sensor to blind it. A stop signal (SIGSTOP, SIGTSTP, SIGTTIN,
//! SIGTTOU) freezes the daemon while the kernel keeps queueing its events; SIGKILL and the
//! fault signals (SIGSEGV...) end it without a word; the other signals whose default action
//! ends a process (SIGUSR1, SIGQUIT, a real-time signal...) would, but the daemon outlives them
//! (`signals::outlive_fatal_signals`). From pid 1 (systemd stopping the service) none is an
//! attack; from any other sender all are critical `sensor_tamper`. SIGHUP (reload), SIGTERM and
//! SIGINT (the documented stop), SIGPIPE (ignored by the Rust runtime) and the signals whose
//! default action is to ignore or continue are not attacks. The memory writes and file changes
//! aimed at the sensor are the `memory_tamper` and `config_change` rules' findings, marked
//! `sensor_tamper` there.
use super::{Context, Finding, Observation, Rule};
use crate::{
    capture::decode::Signal,
    engine::{sensor, signals},
    output::alert::{Detection, Sensor},
};

pub struct SensorTamper;

impl Rule for SensorTamper {
    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        match observation {
            Observation::Signal(s) => evaluate(cx, s).into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

/// The name of a signal that blinds the sensor; `None` for any other.
fn blinding(sig: u32) -> Option<String> {
    // SIGHUP, SIGINT and SIGTERM have handlers; SIGPIPE is ignored.
    if matches!(sig, 1 | 2 | 13 | 15) || signals::harmless_by_default(sig) {
        return None;
    }
    Some(signals::name(sig))
}

fn evaluate(cx: &Context, s: &Signal) -> Option<Finding> {
    let name = blinding(s.signal)?;
    if s.hdr.pid == 1 && !signals::stops(s.signal) {
        return None;
    }
    let whom = match s.target {
        -1 => "every process, the detector included",
        t if t < 0 => "the detector's process group",
        _ => "the detector",
    };
    let mut f = Finding::new(s.hdr.ktime_ns, cx.process.clone(), Detection::SensorTamper);
    f.sensor = Some(Sensor {
        pid: sensor::pid(),
        reason: format!("{name} sent to {whom} ({})", s.syscall),
    });
    Some(f)
}

/// Marks `f` as an attack on the sensor, saying what was done to it.
pub fn mark(f: &mut Finding, reason: String) {
    f.detections.insert(Detection::SensorTamper);
    f.sensor = Some(Sensor {
        pid: sensor::pid(),
        reason,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{capture::decode::Header, output::alert::Process};

    fn run(sender: u32, target: i32, signal: u32) -> Vec<Finding> {
        let process = Process {
            pid: sender,
            ..Default::default()
        };
        let cx = Context::for_test(&process);
        let s = Signal {
            hdr: Header {
                pid: sender,
                ..Default::default()
            },
            target,
            signal,
            syscall: "kill".into(),
        };
        SensorTamper.evaluate(&cx, &Observation::Signal(&s))
    }

    #[test]
    fn stop_signals_and_sigkill_are_attacks_on_the_sensor() {
        let me = sensor::pid() as i32;
        for (sig, name) in [
            (19, "SIGSTOP"),
            (20, "SIGTSTP"),
            (9, "SIGKILL"),
            (10, "SIGUSR1"),
            (11, "SIGSEGV"),
            (3, "SIGQUIT"),
            (libc::SIGRTMIN() as u32 + 8, "SIGRTMIN+8"),
        ] {
            let f = run(4242, me, sig);
            assert_eq!(f.len(), 1, "{name}");
            assert!(f[0].detections.contains(&Detection::SensorTamper));
            let s = f[0].sensor.as_ref().unwrap();
            assert_eq!(s.pid, sensor::pid());
            assert_eq!(s.reason, format!("{name} sent to the detector (kill)"));
        }
        let f = run(4242, -1, 19);
        assert!(f[0]
            .sensor
            .as_ref()
            .unwrap()
            .reason
            .contains("every process"));
    }

    #[test]
    fn reload_and_stop_requests_and_systemds_kill_are_not() {
        let me = sensor::pid() as i32;
        for sig in [1, 2, 13, 15, 17, 18, 28] {
            assert!(run(4242, me, sig).is_empty(), "signal {sig}");
        }
        assert!(run(1, me, 9).is_empty() && run(1, me, 6).is_empty());
    }
}
