//! The HTTP API: routes, the prediction handler, limits and their JSON errors, and the
//! middleware that logs, counts and times out every request.
use super::answer::{face_answer, ImageAnswer};
use super::body::{read_body, BodyBudget, BodyRefused};
use super::classifier::{Classifier, ModelIdentity};
use super::image_input::{decode_upload, decode_upload_inputs, face_views, FaceLocator, FaceRegion, InputError};
use super::metrics::{Metrics, CONTENT_TYPE as METRICS_CONTENT_TYPE};
use crate::data::framing::WholeInputs;
use crate::face_heads::features::crop_face;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};

/// The page, built into the binary.
pub const PAGE: &str = include_str!("page.html");
/// The OpenAPI description of the API, written by hand.
pub const OPENAPI: &str = include_str!("openapi.json");
/// The page may talk only to this server: no CDN, no external fetch.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; connect-src 'self'";
/// What a client is told to wait before retrying a refused request.
const RETRY_AFTER_S: u64 = 1;

/// The request limits (each a `masklab serve` flag).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes in a request body (413).
    pub max_body: u64,
    /// Pixels of one image, read from its header before decoding (413).
    pub max_pixels: u64,
    /// Images in one request (413).
    pub max_images: usize,
    /// Time from request to response (504).
    pub timeout: Duration,
}

pub struct AppState {
    pub classifier: Arc<Classifier>,
    /// The bytes of request bodies buffered at once, across all connections (`--max-body-total`).
    pub bodies: BodyBudget,
    pub decode_pool: rayon::ThreadPool,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub faces: FaceLocator,
    /// Set when shutdown begins: not ready, no new predictions.
    pub draining: AtomicBool,
}

/// An error answered as `{"error": {"status", "code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    fn retry(mut self) -> ApiError {
        self.retry_after = Some(RETRY_AFTER_S);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"status": self.status.as_u16(), "code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// Whether the service takes predictions now: models loaded and warmed, not shutting down,
/// room in the queue.
pub fn readiness(loaded: bool, draining: bool, queue_full: bool) -> Result<(), &'static str> {
    if draining {
        Err("shutting down")
    } else if !loaded {
        Err("loading the models")
    } else if queue_full {
        Err("the queue is full")
    } else {
        Ok(())
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/model", get(model))
        .route("/v1/predict", post(predict))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn_with_state(state.clone(), time_limit))
        .layer(from_fn_with_state(state.clone(), observe))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(NextRequestId::default()))
        .with_state(state)
}

/// What a connection over `--max-connections` is answered, on every request, before it is closed.
pub fn busy_router(metrics: Arc<Metrics>, max_connections: usize) -> Router {
    Router::new().fallback(move || {
        let metrics = metrics.clone();
        async move {
            metrics.request("connection_limit", 503, Duration::ZERO);
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_connections", format!("the server holds its limit of {max_connections} connections (--max-connections); retry shortly"))
                .retry()
        }
    })
}

/// Request ids `<process start, hex>-<counter>`, unless the client sent `x-request-id`.
#[derive(Clone)]
struct NextRequestId {
    prefix: String,
    next: Arc<AtomicU64>,
}

impl Default for NextRequestId {
    fn default() -> Self {
        let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        NextRequestId { prefix: format!("{:x}", start & 0xffff_ffff), next: Arc::new(AtomicU64::new(1)) }
    }
}

impl MakeRequestId for NextRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix)).ok().map(RequestId::new)
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed on this request").into_response()
}

/// Logs one structured line per request and counts it in the metrics.
async fn observe(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string()).unwrap_or_default();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let elapsed = start.elapsed();
    s.metrics.request(&route, status, elapsed);
    let images = response.headers().get("x-images").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    tracing::info!(
        target: "masklab::serve::access",
        request_id = %id, peer = %peer, method = %method, path = %path, route = %route, status, images = %images,
        latency_ms = format_args!("{:.2}", elapsed.as_secs_f64() * 1e3),
        "request"
    );
    response
}

/// Answers 504 when the whole request, body upload included, takes longer than `--timeout-ms`.
async fn time_limit(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(s.limits.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("no answer within {} ms (--timeout-ms)", s.limits.timeout.as_millis()),
        )
        .into_response(),
    }
}

async fn page() -> Response {
    let mut r = Html(PAGE).into_response();
    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_POLICY));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let q = &s.classifier.queue;
    match readiness(s.classifier.info().is_some(), s.draining.load(Ordering::SeqCst), q.is_full()) {
        Ok(()) => Json(serde_json::json!({"status": "ready", "queue_depth": q.depth(), "queue_capacity": q.capacity()})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "not ready", "reason": reason, "queue_depth": q.depth(), "queue_capacity": q.capacity()})),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let q = &s.classifier.queue;
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], s.metrics.encode(q.depth(), q.capacity())).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn model(State(s): State<Arc<AppState>>) -> Result<Json<ModelIdentity>, ApiError> {
    Ok(Json(loaded(&s)?.identity.clone()))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route {} (GET /openapi.json lists them)", req.uri().path()))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{} is not allowed on {}", req.method(), req.uri().path()))
}

fn loaded(s: &AppState) -> Result<&super::classifier::ModelInfo, ApiError> {
    s.classifier.info().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "loading", "the models are still loading").retry())
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    model: &'a ModelIdentity,
    images: Vec<ImageAnswer>,
}

/// One image of a request.
struct Upload {
    name: Option<String>,
    bytes: Bytes,
}

impl Upload {
    /// How error messages name it: `part 2 (b.jpg): ` in a multipart request.
    fn prefix(&self, index: usize, multipart: bool) -> String {
        match (&self.name, multipart) {
            (Some(n), _) => format!("part {} ({n}): ", index + 1),
            (None, true) => format!("part {}: ", index + 1),
            (None, false) => String::new(),
        }
    }
}

/// An image decoded and ready for the classifier.
struct Prepared {
    width: u32,
    height: u32,
    faces: Vec<FaceRegion>,
    views: Vec<Vec<crate::image::decode::RgbImage>>,
    /// Per face, its FaceRes crop per reading of the runs' face heads (None: not a detected face).
    face_crops: Vec<Vec<Option<crate::image::decode::RgbImage>>>,
}

async fn predict(State(s): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    if s.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down").retry());
    }
    let info = loaded(&s)?;
    let (parts, body) = req.into_parts();
    // The body's bytes stay counted in the server's budget until this request is answered.
    let (bytes, _held) = read_body(&parts.headers, body, s.limits.max_body, &s.bodies).await.map_err(body_refused)?;
    let (uploads, multipart) = split_uploads(&parts.headers, bytes, s.limits.max_images).await?;
    let queue = &s.classifier.queue;
    let mut admission = queue.admit(uploads.len()).ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", format!("the queue holds its limit of {} images (--queue); retry shortly", queue.capacity()))
            .retry()
    })?;

    // Decode, find the faces and resize each face once per pipeline, on the decoding threads.
    let pipelines = Arc::new(info.pipelines.clone());
    let margins: Arc<Vec<f32>> = Arc::new(info.face_readings.iter().map(|r| r.margin).collect());
    let (max_pixels, locator) = (s.limits.max_pixels, s.faces.clone());
    let decoding: Vec<_> = uploads
        .iter()
        .map(|u| {
            let (bytes, pipelines, locator, margins) = (u.bytes.clone(), pipelines.clone(), locator.clone(), margins.clone());
            on_pool(&s.decode_pool, &s.metrics, move || -> Result<Prepared, ApiError> {
                if let FaceLocator::WholeImage = locator {
                    // No detector needs the photo's pixels: decode straight to the model inputs
                    // (a whole photo is resized alike whatever a pipeline's framing of faces).
                    let preps: Vec<_> = pipelines.iter().map(|p| p.prep).collect();
                    let (width, height, inputs) = decode_upload_inputs(&bytes, max_pixels, &preps).map_err(input_error)?;
                    return Ok(Prepared { width, height, faces: vec![FaceRegion::whole_of(width, height)], views: vec![inputs], face_crops: vec![vec![None; margins.len()]] });
                }
                let image = decode_upload(&bytes, max_pixels).map_err(input_error)?;
                let faces = locator.locate(&image).map_err(input_error)?;
                let whole = WholeInputs::new(&bytes, &pipelines);
                let views = faces
                    .iter()
                    .map(|f| face_views(&image, f, faces.len(), &pipelines, &whole))
                    .collect::<Result<Vec<_>, String>>()
                    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "undecodable", e))?;
                let face_crops = faces
                    .iter()
                    .map(|f| margins.iter().map(|&m| (!f.whole_image).then(|| crop_face(&image, &f.bbox, m)).transpose()).collect::<Result<Vec<_>, String>>())
                    .collect::<Result<Vec<_>, String>>()
                    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "undecodable", e))?;
                Ok(Prepared { width: image.width, height: image.height, faces, views, face_crops })
            })
        })
        .collect();
    let mut prepared = Vec::with_capacity(uploads.len());
    for (i, (result, upload)) in futures_util::future::join_all(decoding).await.into_iter().zip(&uploads).enumerate() {
        match result.and_then(|r| r) {
            Ok(p) => prepared.push(p),
            Err(mut e) => {
                e.message = format!("{}{}", upload.prefix(i, multipart), e.message);
                return Err(e);
            }
        }
    }

    // Classify: each image is one job; the device thread batches jobs across requests.
    let mut answers = Vec::with_capacity(prepared.len());
    let mut meta = Vec::with_capacity(prepared.len());
    for p in prepared {
        let faces = p.views.len();
        let input = super::classifier::ClassifyInput { faces: p.views, face_crops: p.face_crops };
        let answer = queue
            .submit(&mut admission, input, faces)
            .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down").retry())?;
        answers.push(answer);
        meta.push((p.width, p.height, p.faces));
    }
    let results = futures_util::future::join_all(answers).await;
    let mut images = Vec::with_capacity(results.len());
    for ((result, (width, height, faces)), upload) in results.into_iter().zip(meta).zip(&uploads) {
        let probs = result
            .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server stopped before answering").retry())?
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "inference_failed", e))?;
        let faces = faces.iter().zip(&probs).map(|(f, p)| face_answer(f, p, &info.bounds)).collect();
        images.push(ImageAnswer { name: upload.name.clone(), width, height, faces });
    }
    drop(admission);
    let n = images.len();
    let mut response = Json(PredictResponse { model: &info.identity, images }).into_response();
    response.headers_mut().insert("x-images", HeaderValue::from(n));
    Ok(response)
}

fn body_refused(r: BodyRefused) -> ApiError {
    let e = ApiError::new(r.status, r.code, r.message);
    if r.retry {
        e.retry()
    } else {
        e
    }
}

fn input_error(e: InputError) -> ApiError {
    let (status, code) = match &e {
        InputError::NotAnImage(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_an_image"),
        InputError::TooManyPixels { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_pixels"),
        InputError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        InputError::TooComplex(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_complex"),
        InputError::Undecodable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "undecodable"),
        InputError::Detection(_) => (StatusCode::INTERNAL_SERVER_ERROR, "face_detection"),
    };
    let hint = match e {
        InputError::TooManyPixels { .. } => " (--max-pixels)",
        _ => "",
    };
    ApiError::new(status, code, format!("{e}{hint}"))
}

/// Runs `work` on the decoding threads; a panic there is a 500 for this request alone, its
/// message logged and answered, and counted in the metrics (`masklab_decode_panics_total`).
async fn on_pool<T: Send + 'static>(pool: &rayon::ThreadPool, metrics: &Metrics, work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool.spawn(move || {
        let _ = tx.send(crate::util::panic::catch(work));
    });
    let message = match rx.await {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(panic)) => panic,
        Err(_) => "the decoding thread stopped".to_string(),
    };
    metrics.decode_panic();
    tracing::error!(error = %message, "a decoding thread panicked");
    Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("decoding failed: {message}")))
}

/// The images of a request: the raw body, or every file part of a multipart/form-data body.
async fn split_uploads(headers: &HeaderMap, body: Bytes, max_images: usize) -> Result<(Vec<Upload>, bool), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        if body.is_empty() {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "empty_body", "no image: the body is empty (send a JPEG or PNG as the body, or multipart/form-data)"));
        }
        return Ok((vec![Upload { name: None, bytes: body }], false));
    }
    let bad = |e: multer::Error| ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", format!("malformed multipart body: {e}"));
    let boundary = multer::parse_boundary(content_type).map_err(bad)?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut uploads = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.file_name().map(str::to_string);
        let is_image_type = field.content_type().is_some_and(|m| m.type_().as_str() == "image");
        let bytes = field.bytes().await.map_err(bad)?;
        if name.is_none() && !is_image_type {
            continue; // an ordinary form field
        }
        uploads.push(Upload { name, bytes });
        if uploads.len() > max_images {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_images",
                format!("more than {max_images} images in one request (--max-images)"),
            ));
        }
    }
    if uploads.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "no_image", "the multipart body has no file part"));
    }
    Ok((uploads, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_models_room_and_no_shutdown() {
        assert_eq!(readiness(true, false, false), Ok(()));
        assert_eq!(readiness(false, false, false), Err("loading the models"));
        assert_eq!(readiness(true, false, true), Err("the queue is full"));
        assert_eq!(readiness(true, true, false), Err("shutting down"));
    }

    #[test]
    fn the_openapi_document_describes_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for (path, method) in [("/", "get"), ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get"), ("/openapi.json", "get"), ("/v1/model", "get"), ("/v1/predict", "post")] {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not described");
        }
        let predict = &doc["paths"]["/v1/predict"]["post"]["responses"];
        for status in ["200", "400", "413", "415", "422", "503", "504"] {
            assert!(predict[status].is_object(), "POST /v1/predict answer {status} is not described");
        }
    }
}
