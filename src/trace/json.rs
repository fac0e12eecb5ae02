//! Writing recorded events as a Chrome / Perfetto JSON trace (the "Trace
//! Event Format": `{"traceEvents":[...],"displayTimeUnit":"ns"}`).
//!
//! One process per DistWorker (pid: the host's, named "dist-worker L3
//! (pid N)"), one thread track per worker (tid: worker index + 1, as tid 0
//! means the idle task to trace viewers; named as messages name the
//! worker), one complete slice ("X") per task member run, a flow arrow
//! ("s" / "f") from each producer's slice to each dependent's, a counter
//! ("C") per worker type for its ready queue, and an instant ("i") where a
//! worker left its pool.

use super::Event;
use crate::clock::Scale;
use crate::status::Status;
use std::collections::HashMap;
use std::io::{self, Write};

/// What the file says about the DistWorker the events come from.
pub struct Meta<'a> {
    /// Turns the events' ticks into nanoseconds.
    pub scale: Scale,
    /// The host process.
    pub pid: i32,
    /// Its level in the hierarchy.
    pub level: u32,
    /// Each worker's name in messages, by index.
    pub workers: &'a [String],
    /// Events that found the buffer full.
    pub dropped: u64,
}

/// Writes the whole trace. Flows whose producer or consumer never ran (or
/// whose slice was dropped) are left out.
pub fn write(
    out: &mut impl Write,
    meta: &Meta<'_>,
    events: &[Event],
    reasons: &[String],
) -> io::Result<()> {
    let pid = meta.pid;
    let at = |t: u64| Us(meta.scale.since_start_ns(t));
    let long = |d: u64| Us(meta.scale.ns(d));
    out.write_all(b"{\"traceEvents\":[\n")?;
    write!(
        out,
        "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":0,\"args\":{{\"name\":\"dist-worker L{} (pid {pid})\"}}}}",
        meta.level
    )?;
    for (i, label) in meta.workers.iter().enumerate() {
        let tid = i + 1;
        write!(
            out,
            ",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"name\":"
        )?;
        string(out, label)?;
        write!(
            out,
            "}}}},\n{{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"sort_index\":{i}}}}}"
        )?;
    }
    // The first slice of each task (a group's members share the id).
    let mut slices: HashMap<u64, (u32, u64)> = HashMap::new();
    for e in events {
        if let Event::Run {
            worker,
            task,
            start,
            end,
            ..
        } = *e
        {
            slices
                .entry(task)
                .or_insert((worker, start + (end.saturating_sub(start)) / 2));
        }
    }
    let mut flows = 0u64;
    for e in events {
        match *e {
            Event::Run {
                worker,
                status,
                task,
                callable,
                start,
                end,
            } => {
                write!(
                    out,
                    ",\n{{\"name\":\"callable {callable:#x}\",\"cat\":\"task\",\"ph\":\"X\",\"ts\":{},\"dur\":{},\"pid\":{pid},\"tid\":{},\"args\":{{\"task\":\"{task:#x}\",\"callable\":\"{callable:#x}\",\"status\":\"{}\"}}}}",
                    at(start),
                    long(end.saturating_sub(start)),
                    worker + 1,
                    status_name(status)
                )?;
            }
            Event::Flow { from, to } => {
                let (Some(&(pw, pt)), Some(&(cw, ct))) = (slices.get(&from), slices.get(&to))
                else {
                    continue;
                };
                flows += 1;
                write!(
                    out,
                    ",\n{{\"name\":\"dependency\",\"cat\":\"dep\",\"ph\":\"s\",\"id\":{flows},\"ts\":{},\"pid\":{pid},\"tid\":{},\"args\":{{\"from\":\"{from:#x}\",\"to\":\"{to:#x}\"}}}}",
                    at(pt),
                    pw + 1
                )?;
                write!(
                    out,
                    ",\n{{\"name\":\"dependency\",\"cat\":\"dep\",\"ph\":\"f\",\"bp\":\"e\",\"id\":{flows},\"ts\":{},\"pid\":{pid},\"tid\":{}}}",
                    at(ct),
                    cw + 1
                )?;
            }
            Event::Ready { ty, depth, at: t } => {
                let name = crate::worker::WorkerType::ALL
                    .get(ty as usize)
                    .map_or("?".to_string(), |t| t.to_string());
                write!(
                    out,
                    ",\n{{\"name\":\"ready {name}\",\"ph\":\"C\",\"ts\":{},\"pid\":{pid},\"args\":{{\"tasks\":{depth}}}}}",
                    at(t)
                )?;
            }
            Event::Retired {
                worker,
                status,
                at: t,
                reason,
            } => {
                write!(
                    out,
                    ",\n{{\"name\":\"left the pool\",\"cat\":\"worker\",\"ph\":\"i\",\"s\":\"t\",\"ts\":{},\"pid\":{pid},\"tid\":{},\"args\":{{\"status\":\"{}\",\"reason\":",
                    at(t),
                    worker + 1,
                    status_name(status)
                )?;
                string(out, reasons.get(reason as usize).map_or("", |s| s))?;
                out.write_all(b"}}")?;
            }
        }
    }
    write!(
        out,
        "\n],\n\"displayTimeUnit\":\"ns\",\n\"otherData\":{{\"library\":\"dist-worker {}\",\"level\":{},\"dropped_events\":{}}}}}\n",
        env!("CARGO_PKG_VERSION"),
        meta.level,
        meta.dropped
    )?;
    out.flush()
}

/// A time in ns written as the format's µs, to the ns.
struct Us(u64);

impl std::fmt::Display for Us {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

fn status_name(code: i32) -> &'static str {
    match Status::from_code(code) {
        Some(s) => s.name(),
        None if code == 0 => "DIST_OK",
        None => "DIST_UNKNOWN_STATUS",
    }
}

/// A JSON string literal.
fn string(out: &mut impl Write, s: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    for c in s.chars() {
        match c {
            '"' => out.write_all(b"\\\"")?,
            '\\' => out.write_all(b"\\\\")?,
            '\n' => out.write_all(b"\\n")?,
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => write!(out, "{c}")?,
        }
    }
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_strings_and_statuses() {
        assert_eq!(Us(1_234_567).to_string(), "1234.567");
        assert_eq!(Us(5).to_string(), "0.005");
        let mut v = Vec::new();
        string(&mut v, "a \"b\"\\\n\u{1}").unwrap();
        assert_eq!(String::from_utf8(v).unwrap(), r#""a \"b\"\\\n\u0001""#);
        assert_eq!(status_name(0), "DIST_OK");
        assert_eq!(status_name(6), "DIST_ERR_CHILD_DIED");
        assert_eq!(status_name(99), "DIST_UNKNOWN_STATUS");
    }

    #[test]
    fn a_flow_needs_both_slices() {
        let run = |task, worker, start| Event::Run {
            worker,
            status: 0,
            task,
            callable: 7,
            start,
            end: start + 1000,
        };
        let events = [
            run(1, 0, 0),
            Event::Flow { from: 1, to: 2 },
            Event::Flow { from: 1, to: 3 }, // 3 never ran
            run(2, 1, 2000),
            Event::Ready {
                ty: 1,
                depth: 2,
                at: 10,
            },
        ];
        let workers = [
            "SUB worker 0 (thread)".to_string(),
            "SUB worker 1 (thread)".to_string(),
        ];
        let meta = Meta {
            scale: Scale::identity(),
            pid: 42,
            level: 3,
            workers: &workers,
            dropped: 0,
        };
        let mut v = Vec::new();
        write(&mut v, &meta, &events, &[]).unwrap();
        let text = String::from_utf8(v).unwrap();
        assert_eq!(text.matches("\"ph\":\"s\"").count(), 1, "{text}");
        assert_eq!(text.matches("\"ph\":\"f\"").count(), 1, "{text}");
        assert!(text.contains("\"ts\":0.500,\"pid\":42,\"tid\":1"), "{text}");
        assert!(text.contains("\"ts\":2.500,\"pid\":42,\"tid\":2"), "{text}");
        assert!(text.contains("\"name\":\"ready SUB\""), "{text}");
    }
}
