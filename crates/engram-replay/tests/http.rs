//! The OpenAI-compatible generator against a server this test starts on loopback: the request it sends, a
//! retry after a 5xx, a timeout, a malformed answer and an unreachable endpoint, each with a clear error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use engram_model::ModelError;
use engram_replay::{Generator, HttpGenerator, Sampling};
use engram_tokenizer::Message;
use serde_json::Value;

/// What the server does with each request, in turn.
#[derive(Clone)]
enum Reply {
    /// 200 with this assistant text.
    Text(&'static str),
    Status(u16, &'static str),
    /// Never answers (the client must time out).
    Hang,
}

/// Starts a server answering with `replies` in order; returns its base URL and the request bodies it saw.
fn server(replies: Vec<Reply>) -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        for (stream, reply) in listener.incoming().zip(replies) {
            let Ok(stream) = stream else { return };
            // One thread per connection: a hanging reply must not block the next attempt.
            let log = log.clone();
            thread::spawn(move || handle(stream, reply, &log));
        }
    });
    (url, seen)
}

fn handle(mut stream: TcpStream, reply: Reply, log: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    assert!(
        request_line.starts_with("POST /v1/chat/completions "),
        "{request_line}"
    );
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    log.lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    let (status, text) = match reply {
        Reply::Hang => {
            thread::sleep(Duration::from_secs(5));
            return;
        }
        Reply::Status(s, t) => (s, t.to_owned()),
        Reply::Text(t) => (
            200,
            serde_json::json!({
                "choices": [{"message": {"role": "assistant", "content": t}, "finish_reason": "stop"}],
                "usage": {"completion_tokens": 7}
            })
            .to_string(),
        ),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn client(url: &str) -> HttpGenerator {
    let mut g = HttpGenerator::new(url, "writer");
    g.timeout = Duration::from_secs(1);
    g.retries = 2;
    g.backoff = Duration::from_millis(10);
    g
}

fn prompt() -> Vec<Vec<Message>> {
    vec![vec![Message::user("Rewrite: glon live in caves.")]]
}

#[test]
fn sends_a_chat_request_and_reads_the_answer() {
    let (url, seen) = server(vec![Reply::Text("Glon make their homes in caves.")]);
    let mut g = client(&url);
    g.api_key = Some("secret".into());
    let sampling = Sampling {
        temperature: 0.7,
        top_p: 0.9,
        repetition_penalty: 1.2,
        max_new_tokens: 40,
        seed: 3,
        ..Sampling::greedy(40)
    };
    let out = g.complete(&prompt(), &sampling).unwrap();
    assert_eq!(out[0].text, "Glon make their homes in caves.");
    assert_eq!(out[0].tokens, 7);
    assert!(out[0].finished);
    let req = &seen.lock().unwrap()[0];
    assert_eq!(req["model"], "writer");
    assert_eq!(req["messages"][0]["role"], "user");
    assert_eq!(
        req["messages"][0]["content"],
        "Rewrite: glon live in caves."
    );
    assert_eq!(req["max_tokens"], 40);
    assert!((req["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    assert!(g.name().contains(&url) && g.name().contains("writer"));
}

#[test]
fn retries_a_server_error_then_succeeds() {
    let (url, seen) = server(vec![
        Reply::Status(503, "{\"error\": \"busy\"}"),
        Reply::Text("ok."),
    ]);
    let out = client(&url)
        .complete(&prompt(), &Sampling::greedy(8))
        .unwrap();
    assert_eq!(out[0].text, "ok.");
    assert_eq!(seen.lock().unwrap().len(), 2, "one retry");
}

#[test]
fn a_client_error_is_not_retried_and_is_reported() {
    let (url, seen) = server(vec![
        Reply::Status(400, "{\"error\": \"unknown model writer\"}"),
        Reply::Text("never"),
    ]);
    let err = client(&url)
        .complete(&prompt(), &Sampling::greedy(8))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 400") && msg.contains("unknown model writer") && msg.contains(&url),
        "{msg}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn a_malformed_answer_is_a_clear_error() {
    let (url, _) = server(vec![Reply::Status(200, "{\"choices\": []}")]);
    let err = client(&url)
        .complete(&prompt(), &Sampling::greedy(8))
        .unwrap_err();
    assert!(
        err.to_string().contains("choices[0].message.content"),
        "{err}"
    );
    let (url, _) = server(vec![Reply::Status(200, "not json")]);
    let err = client(&url)
        .complete(&prompt(), &Sampling::greedy(8))
        .unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
}

#[test]
fn a_silent_server_times_out_after_the_retries() {
    let (url, seen) = server(vec![Reply::Hang, Reply::Hang, Reply::Hang]);
    let start = Instant::now();
    let err = client(&url)
        .complete(&prompt(), &Sampling::greedy(8))
        .unwrap_err();
    assert!(matches!(err, ModelError::Http { .. }), "{err:?}");
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn an_unreachable_endpoint_names_the_url() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let err = client(&url)
        .complete(&prompt(), &Sampling::greedy(8))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}/v1/chat/completions"))
            && msg.contains("gave up after 3 attempts"),
        "{msg}"
    );
}

#[test]
fn bad_sampling_is_refused_before_any_request() {
    let err = client("http://127.0.0.1:9/v1")
        .complete(
            &prompt(),
            &Sampling {
                top_p: 0.0,
                ..Sampling::greedy(8)
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("top-p"), "{err}");
}
