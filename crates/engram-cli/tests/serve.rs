//! `engram serve` on loopback, on the real model: chat and text completions (whole and streamed), an adapter
//! picked per request, the replay crate's HTTP generator as a client, and the 4xx answers to malformed,
//! oversized, out-of-range and unknown-model requests, and the 429 past the concurrency bound.

mod common;
mod serving;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;

use common::engram;
use serde_json::{Value, json};
use serving::{Reply, Serve, post, request, wait_for_first_event};

/// The `data:` payloads of an event stream.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

fn chat(model: &str, question: &str, extra: Value) -> Value {
    let mut v = json!({
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 24,
        "temperature": 0,
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn serves_chat_and_completions_with_adapters_streaming_and_clear_errors() {
    // An adapter to pick per request: six steps on one chat, enough to be a different model.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("facts.jsonl");
    std::fs::write(
        &data,
        r#"{"messages": [{"role": "user", "content": "Who built the Varnholt bridge?"}, {"role": "assistant", "content": "Oda Pellin built the Varnholt bridge."}]}"#,
    )
    .unwrap();
    let adapter = dir.path().join("varnholt");
    let (ok, _, stderr) = engram(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        adapter.to_str().unwrap(),
        "--steps",
        "6",
        "--lr",
        "1e-3",
        "--batch-size",
        "1",
    ]);
    assert!(ok, "{stderr}");
    let spec = format!("varnholt={}", adapter.display());
    let server = Serve::start(&[
        "--adapter",
        &spec,
        "--name",
        "smol",
        "--max-body-bytes",
        "4096",
        "--max-tokens",
        "64",
    ]);
    let addr = server.addr.as_str();

    // The models a request may name.
    let r = request(addr, "GET", "/v1/models", b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let ids: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["smol", "varnholt"]);

    // A chat completion on the base model, in OpenAI's shape.
    let q = "What is the capital of France?";
    let r = post(addr, "/v1/chat/completions", &chat("smol", q, json!({})));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "smol");
    let base_answer = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(base_answer.contains("Paris"), "{base_answer}");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let usage = &v["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 5);
    let completion_tokens = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=24).contains(&completion_tokens), "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + completion_tokens)
    );

    // Streamed: the same greedy answer, piece by piece, then the finish reason and [DONE].
    let r = post(
        addr,
        "/v1/chat/completions",
        &chat(
            "smol",
            q,
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let ev = events(&r.body);
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"), "{}", r.body);
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.len() > 3, "several pieces: {}", r.body);
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, base_answer);
    let last = chunks.last().unwrap();
    assert_eq!(
        last["choices"][0]["finish_reason"],
        v["choices"][0]["finish_reason"]
    );
    assert_eq!(
        last["usage"]["completion_tokens"].as_u64(),
        Some(completion_tokens)
    );
    assert!(
        chunks
            .iter()
            .all(|c| c["id"] == chunks[0]["id"] && c["object"] == "chat.completion.chunk")
    );

    // The adapter, by name: its own weights answer (the six steps moved the model's answer to its question).
    let bridge = "Who built the Varnholt bridge?";
    let tuned = post(
        addr,
        "/v1/chat/completions",
        &chat("varnholt", bridge, json!({})),
    );
    assert_eq!(tuned.status, 200, "{}", tuned.body);
    assert_eq!(tuned.json()["model"], "varnholt");
    let plain = post(
        addr,
        "/v1/chat/completions",
        &chat("base", bridge, json!({})),
    );
    assert_eq!(plain.status, 200, "{}", plain.body);
    assert_ne!(
        tuned.json()["choices"][0]["message"]["content"],
        plain.json()["choices"][0]["message"]["content"],
        "the adapter changes the answer"
    );
    // ... and switching back leaves the base model as it was.
    let again = post(addr, "/v1/chat/completions", &chat("smol", q, json!({})));
    assert_eq!(
        again.json()["choices"][0]["message"]["content"],
        base_answer.as_str()
    );

    // Text completion: the prompt continued as it is; a stop string cuts it.
    let r = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "1, 2, 3, 4, 5,", "max_tokens": 16, "stop": ["9"]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(text.contains('6') && !text.contains('9'), "{text:?}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // The replay crate's HTTP generator is a client of this server.
    use engram_replay::{Generator, HttpGenerator, Sampling};
    let mut g = HttpGenerator::new(format!("http://{addr}/v1"), "smol");
    let out = g
        .complete(&[vec![engram_tokenizer_message(q)]], &Sampling::greedy(24))
        .unwrap();
    assert_eq!(out[0].text, base_answer);

    // Clear 4xx answers, each an OpenAI error object.
    let error = |r: &Reply, status: u16| -> Value {
        assert_eq!(r.status, status, "{}", r.body);
        let v = r.json();
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        v["error"].clone()
    };
    let e = error(
        &request(
            addr,
            "POST",
            "/v1/chat/completions",
            b"{\"messages\": [oops",
        ),
        400,
    );
    assert!(
        e["message"].as_str().unwrap().contains("not valid JSON"),
        "{e}"
    );
    let big = json!({"messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let e = error(&post(addr, "/v1/chat/completions", &big), 413);
    assert!(e["message"].as_str().unwrap().contains("4096"), "{e}");
    let e = error(
        &post(addr, "/v1/chat/completions", &chat("nobody", q, json!({}))),
        404,
    );
    assert_eq!(e["code"], "model_not_found");
    assert!(
        e["message"].as_str().unwrap().contains("varnholt"),
        "lists the models: {e}"
    );
    let e = error(
        &post(
            addr,
            "/v1/chat/completions",
            &chat("smol", q, json!({"max_tokens": 65})),
        ),
        400,
    );
    assert_eq!(e["param"], "max_tokens");
    let e = error(
        &post(addr, "/v1/chat/completions", &json!({"messages": []})),
        400,
    );
    assert_eq!(e["param"], "messages");
    error(&request(addr, "GET", "/v1/chat/completions", b""), 405);
    error(&request(addr, "POST", "/v2/anything", b"{}"), 404);
    // The server is still answering after all that.
    let r = post(addr, "/v1/chat/completions", &chat("smol", q, json!({})));
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        base_answer.as_str()
    );
}

fn engram_tokenizer_message(q: &str) -> engram_model::tokenizer::Message {
    engram_model::tokenizer::Message::user(q)
}

/// Past `--max-concurrent`, a request is refused with 429 at once instead of queueing without bound.
#[test]
fn refuses_requests_past_the_concurrency_bound() {
    let server = Serve::start(&["--max-concurrent", "1", "--max-tokens", "64"]);
    let addr = server.addr.clone();
    let mut s = TcpStream::connect(&addr).unwrap();
    let body = json!({"prompt": "1, 2, 3, 4, 5,", "max_tokens": 64, "stream": true}).to_string();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Wait for the first generated piece: the stream now holds the only place.
    let mut reader = BufReader::new(s);
    wait_for_first_event(&mut reader);
    let r = post(
        &addr,
        "/v1/completions",
        &json!({"prompt": "hello", "max_tokens": 4}),
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    // The stream itself finishes normally.
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "{rest}");
    // And once it is done, the place is free again.
    let r = post(
        &addr,
        "/v1/completions",
        &json!({"prompt": "hello", "max_tokens": 4}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}
