//! The published board in Prometheus' text format, written once per
//! published round (not per scrape), with its gzip copy made at the first
//! scrape that asks for it: a scrape then costs the same for 20 or 2,000
//! participants.

use super::board::{LabBoard, ParticipantBoard, Snapshot};
use bytes::Bytes;
use std::fmt::Write;
use std::io::Write as _;
use std::sync::OnceLock;

/// One round's score families, as text and (once asked for) as a raw
/// deflate stream with its CRC-32, to be wrapped in one gzip member after
/// other text (see `gzip_after`).
#[derive(Default)]
pub struct Exposition {
    pub text: Bytes,
    deflated: OnceLock<(Bytes, flate2::Crc)>,
}

/// (name, type, help) of each family, in the order written (by name, as
/// the `prometheus` crate orders them).
const LAB_FAMILIES: [(&str, &str, &str); 3] = [
    ("pglab_lab_info", "gauge", "A lab; always 1."),
    (
        "pglab_lab_participants",
        "gauge",
        "Participants in the lab.",
    ),
    ("pglab_lab_tasks", "gauge", "Tasks in the lab."),
];

/// Per participant (`P`) or per participant and task (`T`).
#[derive(Clone, Copy, PartialEq)]
enum Of {
    Participant,
    Task,
}

/// The participants' families, by name.
const FAMILIES: [(&str, &str, &str, Of); 10] = [
    (
        "pglab_participant_connected",
        "gauge",
        "The participant's open sessions in their database.",
        Of::Participant,
    ),
    (
        "pglab_participant_connected_since_timestamp_seconds",
        "gauge",
        "When the oldest of the participant's open sessions began (Unix time).",
        Of::Participant,
    ),
    (
        "pglab_participant_errors_total",
        "counter",
        "Transactions rolled back in the participant's database.",
        Of::Participant,
    ),
    (
        "pglab_participant_last_activity_timestamp_seconds",
        "gauge",
        "Last statement seen in the participant's database (Unix time).",
        Of::Participant,
    ),
    (
        "pglab_participant_last_progress_timestamp_seconds",
        "gauge",
        "Last time the participant passed one more task (Unix time).",
        Of::Participant,
    ),
    (
        "pglab_participant_score_ratio",
        "gauge",
        "Points over the lab's maximum, 0 to 1.",
        Of::Participant,
    ),
    (
        "pglab_participant_tasks_passed",
        "gauge",
        "Tasks the participant passes.",
        Of::Participant,
    ),
    (
        "pglab_task_first_passed_timestamp_seconds",
        "gauge",
        "When the task first passed (Unix time).",
        Of::Task,
    ),
    (
        "pglab_task_passed",
        "gauge",
        "1 when the participant's task passes, else 0.",
        Of::Task,
    ),
    (
        "pglab_task_points",
        "gauge",
        "Points the participant has for the task.",
        Of::Task,
    ),
];

/// A label value as the text format wants it.
fn escaped(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The value of family `index` for participant `p` (or its task `t`),
/// `None` when the participant has none.
fn value(index: usize, p: &ParticipantBoard, t: Option<usize>, max: f64) -> Option<f64> {
    let stamp = |at: Option<chrono::DateTime<chrono::Utc>>| at.map(|a| a.timestamp() as f64);
    let task = t.and_then(|i| p.tasks.as_ref()?.get(i));
    match index {
        0 => Some(p.connected as f64),
        1 => stamp(p.connected_since.filter(|_| p.connected > 0)),
        2 => Some(p.errors_total.max(0) as f64),
        3 => stamp(p.last_activity),
        4 => stamp(p.last_progress),
        5 => p.tasks.as_ref().map(|_| f64::from(p.points()) / max),
        6 => p.tasks.as_ref().map(|_| p.passed() as f64),
        7 => stamp(task?.first_passed),
        8 => task.map(|t| f64::from(u8::from(t.passed))),
        9 => task.map(|t| f64::from(t.points)),
        _ => None,
    }
}

/// Writes family `index` for every participant of `lab`.
fn family(out: &mut String, index: usize, of: Of, lab: &LabBoard) {
    let max = f64::from(lab.max_points().max(1));
    let id = escaped(&lab.id);
    for p in &lab.participants {
        let who = escaped(if lab.pseudonymize {
            &p.pseudonym
        } else {
            &p.username
        });
        let name = FAMILIES[index].0;
        match of {
            Of::Participant => {
                if let Some(v) = value(index, p, None, max) {
                    let _ = writeln!(out, "{name}{{lab=\"{id}\",participant=\"{who}\"}} {v}");
                }
            }
            Of::Task => {
                for (i, info) in lab.tasks.iter().enumerate() {
                    if let Some(v) = value(index, p, Some(i), max) {
                        let task = escaped(&info.id);
                        let _ = writeln!(
                            out,
                            "{name}{{lab=\"{id}\",participant=\"{who}\",task=\"{task}\"}} {v}"
                        );
                    }
                }
            }
        }
    }
}

impl Exposition {
    /// The score families of `snapshot`.
    pub fn of(snapshot: &Snapshot) -> Self {
        let people: usize = snapshot.labs.iter().map(|l| l.participants.len()).sum();
        let tasks: usize = snapshot
            .labs
            .iter()
            .map(|l| l.participants.len() * l.tasks.len())
            .sum();
        let mut out = String::with_capacity(4096 + people * 900 + tasks * 3 * 110);
        for (index, (name, kind, help)) in LAB_FAMILIES.iter().enumerate() {
            header(&mut out, name, kind, help);
            for lab in &snapshot.labs {
                let id = escaped(&lab.id);
                let _ = match index {
                    0 => writeln!(
                        out,
                        "{name}{{lab=\"{id}\",title=\"{}\"}} 1",
                        escaped(&lab.title)
                    ),
                    1 => writeln!(out, "{name}{{lab=\"{id}\"}} {}", lab.participants.len()),
                    _ => writeln!(out, "{name}{{lab=\"{id}\"}} {}", lab.tasks.len()),
                };
            }
        }
        for (index, (name, kind, help, of)) in FAMILIES.iter().enumerate() {
            header(&mut out, name, kind, help);
            for lab in &snapshot.labs {
                family(&mut out, index, *of, lab);
            }
        }
        header(
            &mut out,
            "pglab_postgres_up",
            "gauge",
            "1 when the Postgres server answered in the latest round.",
        );
        for (server, ok) in &snapshot.servers {
            let _ = writeln!(
                out,
                "pglab_postgres_up{{server=\"{}\"}} {}",
                escaped(server),
                u8::from(*ok)
            );
        }
        if snapshot.at.is_some() {
            header(
                &mut out,
                "pglab_ldap_up",
                "gauge",
                "1 when the LDAP directory answered in the latest round.",
            );
            let _ = writeln!(
                out,
                "pglab_ldap_up {}",
                u8::from(snapshot.ldap_error.is_none())
            );
        }
        Self {
            text: Bytes::from(out),
            deflated: OnceLock::new(),
        }
    }

    /// The text as a final raw deflate stream and its CRC-32, made once.
    fn deflated(&self) -> &(Bytes, flate2::Crc) {
        self.deflated.get_or_init(|| {
            let mut z = flate2::write::DeflateEncoder::new(
                Vec::with_capacity(self.text.len() / 8),
                flate2::Compression::fast(),
            );
            z.write_all(&self.text).expect("writing to memory");
            let mut crc = flate2::Crc::new();
            crc.update(&self.text);
            (Bytes::from(z.finish().expect("writing to memory")), crc)
        })
    }

    /// One gzip member of `before` followed by this text: `before` is
    /// compressed now (it is small), the text was compressed once.
    pub fn gzip_after(&self, before: &[u8]) -> Vec<Bytes> {
        let (deflated, text_crc) = self.deflated();
        // `before` as deflate blocks that do not end the stream (a sync
        // flush), so that the text's blocks may follow.
        let mut head = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        let mut z = flate2::write::DeflateEncoder::new(&mut head, flate2::Compression::fast());
        z.write_all(before).expect("writing to memory");
        z.flush().expect("writing to memory");
        let head = z.get_ref().to_vec();
        let mut crc = flate2::Crc::new();
        crc.update(before);
        crc.combine(text_crc);
        let mut tail = Vec::with_capacity(8);
        tail.extend_from_slice(&crc.sum().to_le_bytes());
        tail.extend_from_slice(&(crc.amount()).to_le_bytes());
        vec![Bytes::from(head), deflated.clone(), Bytes::from(tail)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::board::{LabBoard, ParticipantBoard, TaskBoard, TaskInfo};
    use std::io::Read;

    fn snapshot() -> Snapshot {
        let task = |passed| TaskBoard {
            passed,
            points: u32::from(passed) * 2,
            reason: None,
            hint: None,
            first_passed: passed
                .then(|| chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()),
        };
        Snapshot {
            labs: vec![LabBoard {
                id: "shop".into(),
                title: "Shop \"one\"\\".into(),
                pseudonymize: false,
                public_board: false,
                tasks: vec![
                    TaskInfo {
                        id: "a".into(),
                        title: "A".into(),
                        points: 2,
                    },
                    TaskInfo {
                        id: "b".into(),
                        title: "B".into(),
                        points: 2,
                    },
                ],
                participants: vec![ParticipantBoard {
                    username: "ann".into(),
                    pseudonym: "p-1".into(),
                    database: "shop_ann".into(),
                    server: "main".into(),
                    tasks: Some(vec![task(true), task(false)]),
                    error: None,
                    connected: 1,
                    errors_total: 3,
                    last_activity: None,
                    last_progress: None,
                    connected_since: chrono::DateTime::from_timestamp(1_700_000_100, 0),
                    server_down: false,
                }],
            }],
            servers: vec![("main".into(), true)],
            at: None,
            began: None,
            ldap_error: None,
        }
    }

    #[test]
    fn families_and_values_as_prometheus_reads_them() {
        let e = Exposition::of(&snapshot());
        let text = std::str::from_utf8(&e.text).unwrap();
        for line in [
            "# TYPE pglab_participant_errors_total counter",
            "pglab_lab_info{lab=\"shop\",title=\"Shop \\\"one\\\"\\\\\"} 1",
            "pglab_task_passed{lab=\"shop\",participant=\"ann\",task=\"a\"} 1",
            "pglab_task_passed{lab=\"shop\",participant=\"ann\",task=\"b\"} 0",
            "pglab_task_first_passed_timestamp_seconds{lab=\"shop\",participant=\"ann\",task=\"a\"} 1700000000",
            "pglab_participant_score_ratio{lab=\"shop\",participant=\"ann\"} 0.5",
            "pglab_participant_connected_since_timestamp_seconds{lab=\"shop\",participant=\"ann\"} 1700000100",
            "pglab_participant_errors_total{lab=\"shop\",participant=\"ann\"} 3",
            "pglab_postgres_up{server=\"main\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("task=\"b\"} 1700000000")
                && !text.contains("last_progress_timestamp_seconds{"),
            "no sample where there is no value"
        );
    }

    #[test]
    fn one_gzip_member_of_the_health_part_and_the_cached_text() {
        let e = Exposition::of(&snapshot());
        let before = b"# HELP pglab_build_info x\npglab_build_info 1\n".repeat(50);
        let parts = e.gzip_after(&before);
        let body: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
        // A single-member decoder (as most clients use) reads it whole.
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .unwrap();
        let mut want = before.clone();
        want.extend_from_slice(&e.text);
        assert_eq!(plain, want);
        assert!(
            std::ptr::eq(e.deflated().0.as_ptr(), parts[1].as_ptr()),
            "the text was compressed once, not per scrape"
        );
    }
}
