//! The HTTP side: routing, body limits, the concurrency bound, JSON replies and server-sent events.

use std::io::{Cursor, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tiny_http::{Header, Method, Response};

use crate::api::{self, ApiError, Endpoint, Limits, Meta, Usage};
use crate::{Engine, ServeError};

/// Something to tell about each request (one line), e.g. printing it to stderr.
pub type Log = Box<dyn Fn(&str) + Send + Sync>;

/// A bound HTTP server around an [`Engine`].
pub struct Server {
    http: tiny_http::Server,
    shared: Arc<Shared>,
}

struct Shared {
    engine: Mutex<Engine>,
    names: Vec<String>,
    limits: Limits,
    created: u64,
    in_flight: AtomicUsize,
    counter: AtomicU64,
    log: Option<Log>,
}

impl Server {
    /// Binds `addr` (e.g. `127.0.0.1:8080`; port 0 picks a free one).
    pub fn bind(addr: &str, engine: Engine, limits: Limits) -> Result<Self, ServeError> {
        if limits.max_concurrent == 0 || limits.max_body_bytes == 0 || limits.max_tokens == 0 {
            return Err(ServeError::Option(format!(
                "limits must be at least 1: {limits:?}"
            )));
        }
        let http = tiny_http::Server::http(addr).map_err(|e| ServeError::Bind {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Self {
            http,
            shared: Arc::new(Shared {
                names: engine.model_names(),
                engine: Mutex::new(engine),
                limits,
                created,
                in_flight: AtomicUsize::new(0),
                counter: AtomicU64::new(0),
                log: None,
            }),
        })
    }

    /// Calls `log` with one line per request (method, path, status, model, tokens, seconds).
    pub fn with_log(mut self, log: Log) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.log = Some(log);
        }
        self
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.http.server_addr().to_ip()
    }

    /// Answers requests until the process ends: each on its own thread, the model one request at a time,
    /// at most `max_concurrent` answered or waiting (429 beyond).
    pub fn run(self) -> Result<(), ServeError> {
        loop {
            let req = self.http.recv().map_err(ServeError::Io)?;
            let shared = Arc::clone(&self.shared);
            let busy = shared.in_flight.fetch_add(1, Ordering::SeqCst);
            if busy >= shared.limits.max_concurrent {
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                let e = ApiError::status(
                    429,
                    format!("the server is answering {busy} requests (its limit); retry shortly"),
                );
                shared.log(&req, e.status, "-", 0, Instant::now());
                let _ = req.respond(json(e.status, &e.to_json()));
                continue;
            }
            std::thread::spawn(move || {
                let slot = Slot(&shared.in_flight);
                shared.handle(req, slot);
            });
        }
    }
}

/// A place among the `max_concurrent`, given back when dropped: explicitly just before the last bytes of a
/// response go out (a client that sends its next request on reading them must find the place free), or
/// however the handler ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn json(status: u16, v: &Value) -> Response<Cursor<Vec<u8>>> {
    Response::from_data(v.to_string().into_bytes())
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("static header names and values are valid")
}

impl Shared {
    fn log(
        &self,
        req: &tiny_http::Request,
        status: u16,
        model: &str,
        tokens: usize,
        start: Instant,
    ) {
        if let Some(log) = &self.log {
            log(&format!(
                "{} {} {status} model={model} tokens={tokens} {:.2}s",
                req.method(),
                req.url(),
                start.elapsed().as_secs_f64()
            ));
        }
    }

    fn handle(&self, mut req: tiny_http::Request, slot: Slot) {
        let start = Instant::now();
        let path = req.url().split('?').next().unwrap_or("").to_owned();
        let endpoint = match path.as_str() {
            "/v1/chat/completions" => Some(Endpoint::Chat),
            "/v1/completions" => Some(Endpoint::Completion),
            _ => None,
        };
        let reply = match (req.method(), path.as_str(), endpoint) {
            (Method::Get, "/v1/models", _) => Ok(api::models(self.created, &self.names)),
            (Method::Get, "/health", _) => Ok(serde_json::json!({"status": "ok"})),
            (Method::Post, _, Some(endpoint)) => {
                return match self.read_body(&mut req) {
                    Ok(body) => self.complete(req, slot, endpoint, &body, start),
                    Err(e) => self.fail(req, slot, e, start),
                };
            }
            (_, "/v1/models" | "/health", _) | (_, _, Some(_)) => Err(ApiError::status(
                405,
                format!("{} is not allowed on {path}", req.method()),
            )),
            _ => Err(ApiError::status(
                404,
                format!(
                    "no route {path}; this server has POST /v1/chat/completions, POST /v1/completions, GET /v1/models"
                ),
            )),
        };
        match reply {
            Ok(v) => {
                self.log(&req, 200, "-", 0, start);
                drop(slot);
                let _ = req.respond(json(200, &v));
            }
            Err(e) => self.fail(req, slot, e, start),
        }
    }

    fn fail(&self, req: tiny_http::Request, slot: Slot, e: ApiError, start: Instant) {
        self.log(&req, e.status, "-", 0, start);
        drop(slot);
        let _ = req.respond(json(e.status, &e.to_json()));
    }

    /// The body, refusing more than the limit before reading it when the length is declared.
    fn read_body(&self, req: &mut tiny_http::Request) -> Result<Vec<u8>, ApiError> {
        let max = self.limits.max_body_bytes;
        let too_big = |n: String| {
            ApiError::status(
                413,
                format!("the request body is {n} bytes; this server accepts at most {max}"),
            )
        };
        if let Some(n) = req.body_length()
            && n > max
        {
            return Err(too_big(n.to_string()));
        }
        let mut body = Vec::new();
        req.as_reader()
            .take(max as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| ApiError::status(400, format!("reading the request body: {e}")))?;
        if body.len() > max {
            return Err(too_big(format!("more than {max}")));
        }
        Ok(body)
    }

    fn complete(
        &self,
        req: tiny_http::Request,
        slot: Slot,
        endpoint: Endpoint,
        body: &[u8],
        start: Instant,
    ) {
        let parsed = match endpoint {
            Endpoint::Chat => api::parse_chat(body, &self.limits),
            Endpoint::Completion => api::parse_completion(body, &self.limits),
        };
        let request = match parsed {
            Ok(r) => r,
            Err(e) => return self.fail(req, slot, e, start),
        };
        if request.stream && req.http_version() < &tiny_http::HTTPVersion(1, 1) {
            let e = ApiError::invalid("stream", "streaming needs HTTP/1.1 (chunked transfer)");
            return self.fail(req, slot, e, start);
        }
        // Waits here for the requests ahead of it: the model answers one at a time.
        let mut engine = match self.engine.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let job = match engine.prepare(&request) {
            Ok(j) => j,
            Err(e) => {
                drop(engine);
                return self.fail(req, slot, e, start);
            }
        };
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let meta = Meta {
            id: format!(
                "{}-{:x}{n:04x}",
                match endpoint {
                    Endpoint::Chat => "chatcmpl",
                    Endpoint::Completion => "cmpl",
                },
                self.created
            ),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            model: job.model.clone(),
            endpoint,
        };
        let usage = |completion| Usage {
            prompt: job.prompt.len(),
            completion,
        };
        if !request.stream {
            let result = engine.run(&job, &mut |_| {});
            drop(engine);
            return match result {
                Ok(out) => {
                    self.log(&req, 200, &job.model, out.completion_tokens, start);
                    let v =
                        api::response(&meta, &out.text, out.finish, usage(out.completion_tokens));
                    drop(slot);
                    let _ = req.respond(json(200, &v));
                }
                Err(e) => self.fail(req, slot, e, start),
            };
        }
        // The request line is logged now: `into_writer` consumes the request.
        let line = format!("{} {}", req.method(), req.url());
        let mut sse = Sse::start(req.into_writer());
        if endpoint == Endpoint::Chat {
            sse.event(&api::role_chunk(&meta).to_string());
        }
        let result = engine.run(&job, &mut |text| {
            sse.event(&api::chunk(&meta, text, None, None).to_string())
        });
        drop(engine);
        if let Some(log) = &self.log {
            let (status, tokens) = match &result {
                Ok(out) => (200, out.completion_tokens),
                Err(e) => (e.status, 0),
            };
            log(&format!(
                "{line} {status} (stream) model={} tokens={tokens} {:.2}s",
                job.model,
                start.elapsed().as_secs_f64()
            ));
        }
        match result {
            Ok(out) => {
                let u = request.stream_usage.then(|| usage(out.completion_tokens));
                sse.event(&api::chunk(&meta, "", Some(out.finish), u).to_string());
            }
            // The status line is gone; OpenAI-style streams report a late error as an event.
            Err(e) => sse.event(&e.to_json().to_string()),
        }
        drop(slot);
        sse.event("[DONE]");
        sse.finish();
    }
}

/// Server-sent events over chunked transfer, one chunk per event, flushed at once so that tokens arrive as
/// they are made. A client that went away turns the rest into no-ops (the generation still runs to its
/// token limit).
struct Sse {
    out: Box<dyn Write + Send>,
    ok: bool,
}

impl Sse {
    fn start(mut out: Box<dyn Write + Send>) -> Self {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
                    Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        let ok = out
            .write_all(head.as_bytes())
            .and_then(|_| out.flush())
            .is_ok();
        Self { out, ok }
    }

    fn event(&mut self, data: &str) {
        let payload = format!("data: {data}\n\n");
        self.chunk(payload.as_bytes());
    }

    fn chunk(&mut self, bytes: &[u8]) {
        if !self.ok {
            return;
        }
        let mut write = || -> std::io::Result<()> {
            write!(self.out, "{:x}\r\n", bytes.len())?;
            self.out.write_all(bytes)?;
            self.out.write_all(b"\r\n")?;
            self.out.flush()
        };
        self.ok = write().is_ok();
    }

    fn finish(mut self) {
        if self.ok {
            let _ = self
                .out
                .write_all(b"0\r\n\r\n")
                .and_then(|_| self.out.flush());
        }
    }
}
