//! `engram serve` against hostile and careless clients on loopback, on the real model (issue 22): a huge
//! declared `Content-Length` (GET and POST), slow headers and slow bodies from more connections than
//! `--max-concurrent`, more connections than `--max-connections`, clients that leave mid-generation (streamed
//! and not), a burst past the concurrency bound, and SIGTERM. After each, the process is alive and answers a normal request within a bound.
//!
//! The tests take turns (one lock): each measures latencies, and two servers generating at once on a
//! shared CPU would only blur them. Every bound is generous slack, not a timing target.

mod serving;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use serving::{Reply, Serve, head, post, read_reply, wait_for_first_event};

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// The server without its per-request log lines.
fn start(args: &[&str]) -> Serve {
    Serve::start(&[&["--quiet"], args].concat())
}

impl Serve {
    /// The process is still running and answers a short completion with 200 within `bound`.
    fn assert_serving(&mut self, bound: Duration, after: &str) {
        let status = self.child.try_wait().unwrap();
        assert!(
            status.is_none(),
            "the server died after {after}: {status:?}"
        );
        let start = Instant::now();
        let r = post(&self.addr, "/v1/completions", &short());
        let took = start.elapsed();
        assert_eq!(r.status, 200, "after {after}: {}", r.body);
        assert!(took < bound, "after {after}: a short request took {took:?}");
    }
}

fn short() -> Value {
    json!({"prompt": "The sky is", "max_tokens": 4})
}

/// Counting: the model goes on to `max_tokens` rather than stopping early, which the slot tests need.
fn counting(max_tokens: usize, stream: bool) -> Value {
    json!({"prompt": "1, 2, 3, 4, 5,", "max_tokens": max_tokens, "stream": stream})
}

/// Whether the server has closed `s` (EOF or reset) by `deadline`, reading and dropping whatever it sent.
fn closed_by(s: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => return Some(got),
        }
    }
}

/// A declared length of terabytes is refused (or ignored) without reading or allocating it: the old
/// server aborted with "memory allocation of … bytes failed" draining the unread body.
#[test]
fn a_huge_content_length_is_refused_without_allocating_it() {
    let _turn = turn();
    let mut server = start(&["--max-body-bytes", "4096"]);
    let addr = server.addr.clone();
    for (request, what) in [
        (
            format!(
                "GET /v1/models HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 99999999999999\r\n\r\n"
            ),
            "a GET declaring 99999999999999 bytes",
        ),
        (
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 30000000000\r\n\r\n{{\"messages\""
            ),
            "a POST declaring 30000000000 bytes",
        ),
        (
            format!(
                "POST /v2/nowhere HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 99999999999999\r\n\r\n"
            ),
            "a 404 declaring 99999999999999 bytes",
        ),
    ] {
        let mut s = server.connect();
        s.write_all(request.as_bytes()).unwrap();
        let r = read_reply(&mut s);
        assert_eq!(r.status, 413, "{what}: {}", r.body);
        let e = r.json();
        assert!(
            e["error"]["message"].as_str().unwrap().contains("4096"),
            "{what}: {e}"
        );
        assert_eq!(e["error"]["type"], "invalid_request_error", "{what}");
        server.assert_serving(Duration::from_secs(30), what);
    }
    // A chunked body, which declares no length, is stopped at the limit as it streams in.
    let mut s = server.connect();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let chunk = "x".repeat(1000);
    for _ in 0..8 {
        if write!(s, "{:x}\r\n{chunk}\r\n", chunk.len()).is_err() {
            break;
        }
    }
    let r = read_reply(&mut s);
    assert_eq!(r.status, 413, "{}", r.body);
    server.assert_serving(Duration::from_secs(30), "a chunked body past the limit");
}

/// More connections than `--max-concurrent` that dribble their headers or their body hold nothing the
/// model needs: a normal request is answered meanwhile, and the dribblers are cut off by the header
/// timeout (connection closed) and the body timeout (408). The old server gave everyone else 429 for as
/// long as the dribblers liked.
#[test]
fn slow_headers_and_slow_bodies_lock_nobody_out() {
    let _turn = turn();
    let mut server = start(&[
        "--max-concurrent",
        "2",
        "--header-timeout",
        "1",
        "--body-timeout",
        "1.5",
    ]);
    let addr = server.addr.clone();
    let start = Instant::now();
    let mut slow_heads: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut s = server.connect();
            write!(
                s,
                "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-"
            )
            .unwrap();
            s
        })
        .collect();
    let mut slow_bodies: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut s = server.connect();
            write!(
                s,
                "{}{{\"prompt\"",
                head("POST", "/v1/completions", &addr, 50_000)
            )
            .unwrap();
            s
        })
        .collect();
    // During the attack: every dribbler is still connected, and a normal client is served.
    server.assert_serving(Duration::from_secs(30), "12 dribbling connections");
    let deadline = start + Duration::from_secs(15);
    for s in &mut slow_heads {
        assert!(
            closed_by(s, deadline).is_some(),
            "a connection that never finished its headers is still open after {:?}",
            start.elapsed()
        );
    }
    for s in &mut slow_bodies {
        let got = closed_by(s, deadline).unwrap_or_else(|| {
            panic!(
                "a connection that never finished its body is still open after {:?}",
                start.elapsed()
            )
        });
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("did not arrive within 1.5s"), "{text}");
    }
    server.assert_serving(Duration::from_secs(30), "the dribblers were cut off");
}

/// Past `--max-connections` the server accepts no more until one closes: connections held open at the bound
/// keep a normal client waiting (its request is sent, not answered), and it is served once they go.
#[test]
fn connections_past_the_bound_wait_for_one_to_close() {
    let _turn = turn();
    let mut server = start(&["--max-connections", "3", "--header-timeout", "60"]);
    let idle: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    let addr = server.addr.clone();
    let waiting = std::thread::spawn(move || post(&addr, "/v1/completions", &short()).status);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !waiting.is_finished(),
        "a fourth connection was answered while three were open"
    );
    drop(idle);
    assert_eq!(
        waiting.join().unwrap(),
        200,
        "served once the others closed"
    );
    server.assert_serving(Duration::from_secs(30), "connections at the bound");
}

/// How long the server takes to answer `body` in full, and its `usage.completion_tokens`.
fn full_cost(addr: &str, body: &Value) -> (Duration, u64) {
    let start = Instant::now();
    let r = post(addr, "/v1/completions", body);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    (
        start.elapsed(),
        v["usage"]["completion_tokens"].as_u64().unwrap(),
    )
}

/// A short request, retried past 429s (the server may not have seen the last client leave yet): the time
/// until it is answered.
fn next_answered(addr: &str, give_up: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let r = post(addr, "/v1/completions", &short());
        match r.status {
            200 => return start.elapsed(),
            429 if start.elapsed() < give_up => std::thread::sleep(Duration::from_millis(20)),
            s => panic!("{s} after {:?}: {}", start.elapsed(), r.body),
        }
    }
}

/// A client that leaves mid-generation, streamed or not, frees the model at the next token: the next
/// request is answered well before the abandoned generation would have ended. The old server generated
/// to `max_tokens` for nobody while the next client waited.
#[test]
fn a_client_leaving_mid_generation_frees_the_model() {
    let _turn = turn();
    let mut server = start(&["--max-concurrent", "1", "--max-tokens", "400"]);
    let addr = server.addr.clone();
    // What the abandoned request costs in full (and that it does run to its limit).
    let long = 120;
    let (full, tokens) = full_cost(&addr, &counting(long, false));
    assert_eq!(
        tokens, long as u64,
        "the counting prompt runs to max_tokens"
    );
    let leave_after = full / 5;
    for stream in [false, true] {
        let body = counting(long, stream).to_string();
        let mut s = server.connect();
        s.write_all(head("POST", "/v1/completions", &addr, body.len()).as_bytes())
            .unwrap();
        s.write_all(body.as_bytes()).unwrap();
        if stream {
            // Generation is under way once the first event arrives.
            wait_for_first_event(&mut BufReader::new(s.try_clone().unwrap()));
        }
        std::thread::sleep(leave_after);
        drop(s);
        let waited = next_answered(&addr, full);
        // The abandoned generation had at least 4/5 of `full` left (minus this request's own cost).
        assert!(
            waited < full / 3,
            "stream={stream}: the next request waited {waited:?}; the whole abandoned generation takes {full:?}"
        );
    }
    server.assert_serving(Duration::from_secs(30), "two abandoned generations");
}

/// A burst of requests past `--max-concurrent`: each is answered, 200 or an immediate 429 with OpenAI's
/// error object, none hangs; afterwards service is normal.
#[test]
fn a_burst_past_the_concurrency_bound_gets_429s_then_normal_service() {
    let _turn = turn();
    let mut server = start(&["--max-concurrent", "2"]);
    let addr = server.addr.clone();
    let start = Instant::now();
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|_| scope.spawn(|| post(&addr, "/v1/completions", &counting(24, false))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(ok + refused.len(), 12, "only 200s and 429s");
    assert!(
        ok >= 1 && refused.len() >= 6,
        "{ok} answered, {} refused",
        refused.len()
    );
    for r in refused {
        assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    }
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    server.assert_serving(Duration::from_secs(30), "a burst of 12");
}

/// SIGTERM: the server stops accepting, lets the request in flight finish, and exits 0; one that outlasts
/// `--shutdown-timeout` is cancelled and the exit is still prompt. The old server died of the signal.
#[cfg(unix)]
#[test]
fn sigterm_finishes_what_is_in_flight_and_exits_zero() {
    let _turn = turn();
    let term = |s: &Serve| {
        let ok = Command::new("kill")
            .args(["-TERM", &s.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
    };
    let wait_exit = |s: &mut Serve, bound: Duration| {
        let start = Instant::now();
        loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < bound,
                "still running {bound:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let start_stream = |s: &Serve, max_tokens: usize| {
        let body = counting(max_tokens, true).to_string();
        let mut c = s.connect();
        c.write_all(head("POST", "/v1/completions", &s.addr, body.len()).as_bytes())
            .unwrap();
        c.write_all(body.as_bytes()).unwrap();
        let mut reader = BufReader::new(c);
        wait_for_first_event(&mut reader);
        reader
    };

    // In flight and short: finished in full, then exit 0.
    let mut server = start(&["--shutdown-timeout", "30"]);
    let mut reader = start_stream(&server, 24);
    term(&server);
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "{rest}");
    let status = wait_exit(&mut server, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect(&server.addr).is_err(), "still accepting");

    // In flight and long: cancelled at the shutdown timeout, exit 0 all the same.
    let mut server = start(&["--shutdown-timeout", "0.5", "--max-tokens", "2000"]);
    let mut reader = start_stream(&server, 2000);
    let signalled = Instant::now();
    term(&server);
    let status = wait_exit(&mut server, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains("[DONE]"),
        "2000 tokens cannot have been made in {:?}",
        signalled.elapsed()
    );
}
