//! Who is calling: a bearer JWT (HS256, secret `AUTH_JWT_SECRET`) whose `sub`
//! is the user id and whose `role: "admin"` lifts the tenant boundary, or,
//! with no secret configured, the single local user of a loopback-only API.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use uuid::Uuid;

use super::error::{ApiError, InternalError};
use super::ApiState;

/// The user every request is made as when no `AUTH_JWT_SECRET` is set: the
/// API is then reachable from this machine only, and its one user is its
/// operator (who therefore also sees courses submitted by CLI or AMQP).
pub const LOCAL_USER: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);

/// How requests are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// Bearer JWTs signed with this HS256 secret (validation rules built once).
    Jwt(Box<(DecodingKey, Validation)>),
    /// No authentication: everything is [`LOCAL_USER`], an admin.
    Local,
}

impl Auth {
    /// JWT auth when a non-empty secret is given, local otherwise.
    pub(crate) fn new(secret: Option<&str>) -> Self {
        match secret {
            Some(s) if !s.is_empty() => Self::Jwt(Box::new((
                DecodingKey::from_secret(s.as_bytes()),
                Validation::new(Algorithm::HS256),
            ))),
            _ => Self::Local,
        }
    }
}

/// The claims read from a token; others are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    role: Option<String>,
}

/// The authenticated caller, extracted from each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    /// Admins see and change every user's courses.
    pub admin: bool,
}

impl User {
    /// Whether the caller may see a course owned by `owner`.
    pub(crate) fn may_access(&self, owner: Uuid) -> bool {
        self.admin || self.id == owner
    }

    /// Whether the caller may make `owner` the owner of a new course:
    /// admins name anyone, other users only themselves.
    pub(crate) fn may_act_for(&self, owner: Uuid) -> bool {
        self.may_access(owner)
    }
}

impl FromRequest for User {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<ApiState>>() else {
            return ready(Err(InternalError::NoState.into()));
        };
        ready(authenticate(&state.auth, req))
    }
}

fn authenticate(auth: &Auth, req: &HttpRequest) -> Result<User, ApiError> {
    let (key, validation) = match auth {
        Auth::Local => {
            return Ok(User {
                id: LOCAL_USER,
                admin: true,
            })
        }
        Auth::Jwt(jwt) => (&jwt.0, &jwt.1),
    };
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <token>".into()))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })?;
    user_from_token(key, validation, token)
}

/// The user a token names, with `auth`'s secret; the local user without one.
/// The web app's session cookie holds such a token.
///
/// # Errors
/// 401 for a token that is invalid, expired or names no user id.
pub(crate) fn user_of_token(auth: &Auth, token: &str) -> Result<User, ApiError> {
    match auth {
        Auth::Local => Ok(User {
            id: LOCAL_USER,
            admin: true,
        }),
        Auth::Jwt(jwt) => user_from_token(&jwt.0, &jwt.1, token),
    }
}

fn user_from_token(
    key: &DecodingKey,
    validation: &Validation,
    token: &str,
) -> Result<User, ApiError> {
    let data = jsonwebtoken::decode::<Claims>(token, key, validation)
        .map_err(|e| ApiError::Unauthorized(format!("invalid token: {e}")))?;
    let id = Uuid::parse_str(&data.claims.sub)
        .map_err(|_| ApiError::Unauthorized("the token's sub must be a user id (UUID)".into()))?;
    Ok(User {
        id,
        admin: data.claims.role.as_deref() == Some("admin"),
    })
}
