//! The one place engine errors become HTTP answers: `{"message": ...}` with Docker's status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::engine::EngineError;
use crate::store::StoreError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::NotFound(_) => StatusCode::NOT_FOUND,
            EngineError::Conflict(_) => StatusCode::CONFLICT,
            EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
            EngineError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            EngineError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            EngineError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Store(s) if EngineError::is_bad_input(s) => StatusCode::BAD_REQUEST,
            EngineError::Store(StoreError::MissingBlob(_)) => StatusCode::NOT_FOUND,
            EngineError::Upstream(_) | EngineError::Store(_) | EngineError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        Self { status, message: e.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "message": self.message }))).into_response()
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
