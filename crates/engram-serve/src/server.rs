//! The HTTP side: hyper connections (header-read timeout, graceful shutdown), axum routes, tower-http's body
//! limit, the concurrency bound, JSON replies and server-sent events. The model runs on its own thread
//! ([`Worker`]), never on the async executor: a forward pass is blocking CPU work.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, Version, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body::Frame;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc as tmpsc};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;

use crate::api::{self, ApiError, Endpoint, Limits, Meta, Usage};
use crate::{Engine, Output, ServeError};

/// Something to tell about each request (one line), e.g. printing it to stderr.
pub type Log = Box<dyn Fn(&str) + Send + Sync>;

/// How long the server waits on a client, and on itself when asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From a connection's first byte to the end of a request's headers (the connection is closed past it;
    /// an idle keep-alive connection is closed as well).
    pub header: Duration,
    /// From the end of the headers to the end of the body (408 past it).
    pub body: Duration,
    /// After SIGTERM/SIGINT, how long requests in flight may take to finish before they are cancelled.
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header: Duration::from_secs(10),
            body: Duration::from_secs(30),
            shutdown: Duration::from_secs(10),
        }
    }
}

/// A bound HTTP server around an [`Engine`].
pub struct Server {
    listener: std::net::TcpListener,
    engine: Engine,
    limits: Limits,
    timeouts: Timeouts,
    log: Option<Log>,
}

impl Server {
    /// Binds `addr` (e.g. `127.0.0.1:8080`; port 0 picks a free one).
    pub fn bind(addr: &str, engine: Engine, limits: Limits) -> Result<Self, ServeError> {
        limits.check()?;
        let listener = std::net::TcpListener::bind(addr).map_err(|e| ServeError::Bind {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            listener,
            engine,
            limits,
            timeouts: Timeouts::default(),
            log: None,
        })
    }

    /// Calls `log` with one line per request (method, path, status, model, tokens, seconds).
    pub fn with_log(mut self, log: Log) -> Self {
        self.log = Some(log);
        self
    }

    /// Replaces the default [`Timeouts`]; each must be more than zero.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Result<Self, ServeError> {
        for (option, value) in [
            ("--header-timeout", timeouts.header),
            ("--body-timeout", timeouts.body),
            ("--shutdown-timeout", timeouts.shutdown),
        ] {
            if value.is_zero() {
                return Err(ServeError::Option(format!(
                    "invalid option `{option}` = 0: must be more than 0 seconds"
                )));
            }
        }
        self.timeouts = timeouts;
        Ok(self)
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Answers requests until SIGTERM or SIGINT (Ctrl-C), then shuts down gracefully (see
    /// [`Server::run_until`]).
    pub fn run(self) -> Result<(), ServeError> {
        self.run_until(stop_signal())
    }

    /// Answers requests until `stop` completes: each connection on the async runtime, the model one
    /// request at a time on its own thread, at most `max_concurrent` completions answered or waiting (429
    /// beyond). Then it stops accepting, lets the requests in flight finish for up to the shutdown timeout,
    /// cancels what is left and returns.
    pub fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            listener,
            engine,
            limits,
            timeouts,
            log,
        } = self;
        listener.set_nonblocking(true).map_err(ServeError::Io)?;
        let (work, worker) = Worker::start(engine);
        let created = unix_now();
        let shared = Arc::new(Shared {
            names: worker.names.clone(),
            slots: Arc::new(Semaphore::new(limits.max_concurrent)),
            limits,
            timeouts,
            created,
            counter: AtomicU64::new(0),
            work: Mutex::new(Some(work)),
            log,
        });
        // Two threads carry the connections; the model has its own (and Burn's rayon pool for its kernels).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(ServeError::Io)?;
        let result = runtime.block_on(serve(listener, Arc::clone(&shared), stop));
        // Dropping the runtime drops every connection still open, and with them their cancel guards: the
        // model stops at its next token.
        runtime.shutdown_timeout(Duration::from_secs(1));
        // No new work; the worker ends once what is queued (all cancelled by now) is skipped.
        drop(shared.work.lock().unwrap_or_else(|p| p.into_inner()).take());
        drop(shared);
        worker.join();
        result
    }
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Io)?;
    let app = router(Arc::clone(&shared));
    let mut http = hyper::server::conn::http1::Builder::new();
    // A client that never finishes its headers (slowloris) is cut off; hyper needs a timer for that.
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.timeouts.header);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(shared.limits.max_connections));
    let mut stop = std::pin::pin!(stop);
    loop {
        // At the connection bound, wait for one to close before accepting another.
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(p) => p,
                // The semaphore is never closed; were it, there would be nothing left to serve.
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors and the like: pause rather than spin, keep serving.
                    Err(e) => {
                        shared.log(&format!("accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    // A client that goes away mid-request is its own business: nothing to report.
                    let _ = conn.await;
                    drop(permit);
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    shared.log("shutting down: no new connections; waiting for the requests in flight");
    tokio::select! {
        () = graceful.shutdown() => shared.log("shut down"),
        () = tokio::time::sleep(shared.timeouts.shutdown) => shared.log(&format!(
            "shut down: requests still in flight after {:.1}s were cancelled",
            shared.timeouts.shutdown.as_secs_f64()
        )),
    }
    Ok(())
}

/// SIGTERM or SIGINT. A signal that cannot be watched only leaves the other one (or none, and the process
/// ends as it always could, by being killed).
async fn stop_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Shared {
    names: Vec<String>,
    /// The `max_concurrent` places; a permit travels with a streamed body until its last event, which is
    /// why this is not tower's concurrency layer (that one frees the place when the headers go out).
    slots: Arc<Semaphore>,
    limits: Limits,
    timeouts: Timeouts,
    created: u64,
    counter: AtomicU64,
    /// Taken away at shutdown so that the worker thread can end.
    work: Mutex<Option<mpsc::Sender<Work>>>,
    log: Option<Log>,
}

impl Shared {
    fn log(&self, line: &str) {
        if let Some(log) = &self.log {
            log(line);
        }
    }

    fn submit(&self, work: Work) -> Result<(), ApiError> {
        let sender = self.work.lock().unwrap_or_else(|p| p.into_inner());
        sender
            .as_ref()
            .and_then(|s| s.send(work).ok())
            .ok_or_else(|| ApiError::status(503, "the server is shutting down"))
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completion))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(Arc::clone(&shared), edge))
                // Refuses a declared length over the limit before reading a byte, and stops a body
                // (chunked, or longer than it said) at the limit.
                .layer(RequestBodyLimitLayer::new(shared.limits.max_body_bytes)),
        )
        .with_state(shared)
}

/// What a handler tells the request log: the model that answered and the tokens it made.
#[derive(Clone)]
struct Served {
    model: String,
    tokens: usize,
}

/// Marks a streamed response, which logs itself when its last event is out.
#[derive(Clone)]
struct Streamed;

/// Around every request: tower-http's plain-text 413 becomes an OpenAI error object, and the request is
/// logged.
async fn edge(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let line = format!("{} {}", req.method(), req.uri());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut res = next.run(req).await;
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
        let n = declared.unwrap_or_else(|| "more than the limit's".into());
        res = error(too_big(&n, shared.limits.max_body_bytes));
    }
    if res.extensions().get::<Streamed>().is_none() {
        let (model, tokens) = res
            .extensions()
            .get::<Served>()
            .map_or(("-", 0), |s| (s.model.as_str(), s.tokens));
        shared.log(&format!(
            "{line} {} model={model} tokens={tokens} {:.2}s",
            res.status().as_u16(),
            start.elapsed().as_secs_f64()
        ));
    }
    res
}

fn too_big(n: &str, max: usize) -> ApiError {
    ApiError::status(
        413,
        format!("the request body is {n} bytes; this server accepts at most {max}"),
    )
}

fn json(status: u16, v: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error(e: ApiError) -> Response {
    let mut res = json(e.status, &e.to_json());
    // The rest of an unread body (a 408 or 413) must not be taken for the next request.
    if matches!(e.status, 408 | 413) {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

async fn models(State(shared): State<Arc<Shared>>) -> Response {
    json(200, &api::models(shared.created, &shared.names))
}

async fn health() -> Response {
    json(200, &serde_json::json!({"status": "ok"}))
}

async fn not_found(uri: Uri) -> Response {
    error(ApiError::status(
        404,
        format!(
            "no route {}; this server has POST /v1/chat/completions, POST /v1/completions, GET /v1/models",
            uri.path()
        ),
    ))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(ApiError::status(
        405,
        format!("{method} is not allowed on {}", uri.path()),
    ))
}

async fn chat(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    complete(shared, Endpoint::Chat, req).await
}

async fn completion(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    complete(shared, Endpoint::Completion, req).await
}

/// The whole body within the body timeout (408) and the size limit (413).
async fn read_body(shared: &Shared, body: Body) -> Result<Bytes, ApiError> {
    let max = shared.limits.max_body_bytes;
    let wait = shared.timeouts.body;
    match tokio::time::timeout(wait, axum::body::to_bytes(body, max)).await {
        Err(_) => Err(ApiError::status(
            408,
            format!(
                "the request body did not arrive within {:.1}s",
                wait.as_secs_f64()
            ),
        )),
        Ok(Err(e)) if is_length_limit(&e) => Err(too_big(&format!("more than {max}"), max)),
        Ok(Err(e)) => Err(ApiError::status(
            400,
            format!("reading the request body: {e}"),
        )),
        Ok(Ok(body)) => Ok(body),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

async fn complete(shared: Arc<Shared>, endpoint: Endpoint, req: Request) -> Response {
    match answer(shared, endpoint, req).await {
        Ok(res) => res,
        Err(e) => error(e),
    }
}

async fn answer(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    req: Request,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let line = format!("{} {}", req.method(), req.uri());
    let version = req.version();
    let body = read_body(&shared, req.into_body()).await?;
    let request = match endpoint {
        Endpoint::Chat => api::parse_chat(&body, &shared.limits),
        Endpoint::Completion => api::parse_completion(&body, &shared.limits),
    }?;
    if request.stream && version < Version::HTTP_11 {
        return Err(ApiError::invalid(
            "stream",
            "streaming needs HTTP/1.1 (chunked transfer)",
        ));
    }
    // A place among the `max_concurrent`, taken only now: a client still sending its body holds none.
    let permit = Arc::clone(&shared.slots).try_acquire_owned().map_err(|_| {
        ApiError::status(
            429,
            format!(
                "the server is answering {} requests (its limit); retry shortly",
                shared.limits.max_concurrent
            ),
        )
    })?;
    let stream = request.stream;
    let stream_usage = request.stream_usage;
    let (events, mut rx) = tmpsc::unbounded_channel();
    // Raised when this handler (or the streamed body) is dropped before the answer is out: the client went
    // away, or the server stopped waiting for it.
    let cancel = Cancel::new(line.clone(), start, Arc::clone(&shared));
    shared.submit(Work {
        request,
        cancel: Arc::clone(&cancel.flag),
        events,
    })?;
    let (model, prompt_tokens) = match rx.recv().await {
        Some(Event::Started {
            model,
            prompt_tokens,
        }) => (model, prompt_tokens),
        Some(Event::Done(Err(e))) => {
            cancel.disarm();
            return Err(e);
        }
        _ => return Err(ApiError::status(500, "the model stopped answering")),
    };
    let n = shared.counter.fetch_add(1, Ordering::SeqCst);
    let meta = Meta {
        id: format!(
            "{}-{:x}{n:04x}",
            match endpoint {
                Endpoint::Chat => "chatcmpl",
                Endpoint::Completion => "cmpl",
            },
            shared.created
        ),
        created: unix_now(),
        model,
        endpoint,
    };
    if !stream {
        let result = loop {
            match rx.recv().await {
                Some(Event::Text(_)) => {}
                Some(Event::Done(result)) => break result,
                _ => return Err(ApiError::status(500, "the model stopped answering")),
            }
        };
        cancel.disarm();
        let out = result?;
        let usage = Usage {
            prompt: prompt_tokens,
            completion: out.completion_tokens,
        };
        let v = api::response(&meta, &out.text, out.finish, usage);
        let mut res = json(200, &v);
        res.extensions_mut().insert(Served {
            model: meta.model.clone(),
            tokens: out.completion_tokens,
        });
        // Freed before the response goes out: a client that sends its next request on reading it must
        // find the place free.
        drop(permit);
        return Ok(res);
    }
    let first = (endpoint == Endpoint::Chat).then(|| sse(&api::role_chunk(&meta).to_string()));
    let body = SseBody {
        events: rx,
        meta,
        prompt_tokens,
        stream_usage,
        first,
        permit: Some(permit),
        cancel: Some(cancel),
        shared,
        line,
        start,
        done: false,
    };
    let mut res = Response::new(Body::new(body));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res.extensions_mut().insert(Streamed);
    Ok(res)
}

fn sse(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// Sets the request's cancel flag when dropped unless disarmed (the answer went out in full), and says so
/// in the log.
struct Cancel {
    flag: Arc<AtomicBool>,
    line: String,
    start: Instant,
    shared: Arc<Shared>,
    armed: bool,
}

impl Cancel {
    fn new(line: String, start: Instant, shared: Arc<Shared>) -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            line,
            start,
            shared,
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Cancel {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::SeqCst);
            self.shared.log(&format!(
                "{} cancelled after {:.2}s: the client went away (or the server stopped waiting)",
                self.line,
                self.start.elapsed().as_secs_f64()
            ));
        }
    }
}

/// Server-sent events as the worker makes them: hyper sends each as a chunk as soon as it is polled. The
/// place among `max_concurrent` is held until the last event; dropping the body (the client went away)
/// cancels the generation.
struct SseBody {
    events: tmpsc::UnboundedReceiver<Event>,
    meta: Meta,
    prompt_tokens: usize,
    stream_usage: bool,
    first: Option<Bytes>,
    permit: Option<OwnedSemaphorePermit>,
    cancel: Option<Cancel>,
    shared: Arc<Shared>,
    line: String,
    start: Instant,
    done: bool,
}

impl SseBody {
    fn finish(&mut self, result: Result<Output, ApiError>) -> Bytes {
        self.done = true;
        if let Some(c) = self.cancel.take() {
            c.disarm();
        }
        let (status, tokens) = match &result {
            Ok(out) => (200, out.completion_tokens),
            Err(e) => (e.status, 0),
        };
        self.shared.log(&format!(
            "{} {status} (stream) model={} tokens={tokens} {:.2}s",
            self.line,
            self.meta.model,
            self.start.elapsed().as_secs_f64()
        ));
        let last = match result {
            Ok(out) => {
                let usage = self.stream_usage.then_some(Usage {
                    prompt: self.prompt_tokens,
                    completion: out.completion_tokens,
                });
                api::chunk(&self.meta, "", Some(out.finish), usage)
            }
            // The status line is gone; OpenAI-style streams report a late error as an event.
            Err(e) => e.to_json(),
        };
        // Freed before the last bytes go out (see the non-streamed answer).
        self.permit = None;
        let mut bytes = sse(&last.to_string()).to_vec();
        bytes.extend_from_slice(&sse("[DONE]"));
        Bytes::from(bytes)
    }
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let bytes = match std::task::ready!(self.events.poll_recv(cx)) {
            Some(Event::Text(text)) => sse(&api::chunk(&self.meta, &text, None, None).to_string()),
            Some(Event::Done(result)) => self.finish(result),
            Some(Event::Started { .. }) | None => {
                self.finish(Err(ApiError::status(500, "the model stopped answering")))
            }
        };
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.first.is_none()
    }
}

/// A request for the model thread.
struct Work {
    request: api::Request,
    cancel: Arc<AtomicBool>,
    events: tmpsc::UnboundedSender<Event>,
}

/// What the model thread sends back: the request started (or [`Event::Done`] with its error), its text as
/// it grows, and its end.
enum Event {
    Started { model: String, prompt_tokens: usize },
    Text(String),
    Done(Result<Output, ApiError>),
}

/// The thread that owns the model and answers one request at a time, in the order they came.
struct Worker {
    names: Vec<String>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    fn start(mut engine: Engine) -> (mpsc::Sender<Work>, Self) {
        let names = engine.model_names();
        let (tx, rx) = mpsc::channel::<Work>();
        let thread = std::thread::spawn(move || {
            while let Ok(work) = rx.recv() {
                // Its client left while it waited: nothing to do.
                if work.cancel.load(Ordering::SeqCst) {
                    continue;
                }
                let job = match engine.prepare(&work.request) {
                    Ok(job) => job,
                    Err(e) => {
                        let _ = work.events.send(Event::Done(Err(e)));
                        continue;
                    }
                };
                let _ = work.events.send(Event::Started {
                    model: job.model.clone(),
                    prompt_tokens: job.prompt.len(),
                });
                let result = engine.run_cancellable(&job, &work.cancel, &mut |text| {
                    // A closed channel means the response is gone: stop at the next token.
                    if work.events.send(Event::Text(text.to_owned())).is_err() {
                        work.cancel.store(true, Ordering::SeqCst);
                    }
                });
                let _ = work.events.send(Event::Done(result));
            }
        });
        (tx, Self { names, thread })
    }

    fn join(self) {
        let _ = self.thread.join();
    }
}
